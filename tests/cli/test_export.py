"""``k382 export``: CSV and JSON out of both backends, exact values, ranges, streaming."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest

from kamstrup382.cli import main
from kamstrup382.documents import reading_schema
from kamstrup382.storage.url import open_storage
from tests.storage.samples import START, STEP, failure, reading


@pytest.fixture(params=["sqlite", "postgres"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'k382.sqlite'}"
    url: str = request.getfixturevalue("postgres_db_url")
    return url


@pytest.fixture
def filled(storage_url: str) -> str:
    with open_storage(storage_url) as storage:
        storage.record(
            [reading("house", i) for i in range(8)]
            + [
                reading(
                    "barn", i, energy=(9_999_997 + i) % 10**7, tariff_1=(9_999_998 + 2 * i) % 10**7
                )
                for i in range(4)
            ],
            [failure("house", 9)],
        )
    return storage_url


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["export", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_readings_are_objects_with_exact_numbers(
    filled: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "--storage", filled, "--format", "json", "--meter", "house")
    assert code == 0
    rows = json.loads(out, parse_float=Decimal)
    assert len(rows) == 8
    first = rows[0]
    expected = reading("house", 0)
    for row in rows:  # the one shape of a reading (docs/formats.md)
        jsonschema.validate(json.loads(json.dumps(row, default=float)), reading_schema())
    assert first["meter"] == "house"
    assert first["read_at"] == "2026-03-01T00:00:01+00:00"
    registers = first["registers"]
    assert registers["customer_number"] == {"code": "0.0", "value": "00012345", "unit": None}
    assert registers["energy"]["value"] == 1500 and isinstance(registers["energy"]["value"], int)
    assert registers["actual_peak"] == {"code": "1.6", "value": Decimal("12.3"), "unit": "kW"}
    assert registers["last_month_peak"]["value"] == Decimal("999999.9")
    assert first["identification"]["type_number"]["text"] == expected.type_number
    assert first["timing"]["attempts"] == expected.attempts
    assert "raw" not in first
    assert [r["slot"] for r in rows] == [(START + i * STEP).isoformat() for i in range(8)]


def test_csv_readings_with_a_range_and_raw(filled: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys,
        "--storage", filled,
        "--since", "2026-03-01T00:30:00",  # no zone: UTC
        "--until", "2026-03-01T02:00:00+01:00",  # = 01:00 UTC
        "--raw",
    )  # fmt: skip
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["meter"], r["slot"]) for r in rows] == [
        ("barn", "2026-03-01T00:30:00+00:00"),
        ("barn", "2026-03-01T00:45:00+00:00"),
        ("house", "2026-03-01T00:30:00+00:00"),
        ("house", "2026-03-01T00:45:00+00:00"),
    ]
    assert rows[0]["energy"] == "9999999"
    assert rows[0]["actual_peak"] == "12.3"
    assert bytes.fromhex(rows[0]["raw"]) == reading("barn", 2).raw


def test_consumption_across_the_wrap_as_jsonl_into_a_file(
    filled: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "out.jsonl"
    code, out, err = _run(
        capsys, "--storage", filled, "--what", "consumption", "--format", "jsonl",
        "--meter", "barn", "--output", str(target),
    )  # fmt: skip
    assert code == 0
    assert out == ""
    assert "3 consumption rows" in err
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["energy"] for r in rows] == [1, 1, 1]  # 9999997 -> 9999998 -> 9999999 -> 0
    assert [r["tariff_1"] for r in rows] == [2, 2, 2]  # 9999998 -> 0 -> 2 -> 4
    assert [r["tariff_2"] for r in rows] == [1, 1, 1]
    assert rows[0]["start"] == "2026-03-01T00:00:01+00:00"
    assert set(rows[0]) == {"meter", "start", "end", "energy", "tariff_1", "tariff_2"}


def test_empty_results_still_have_a_shape(filled: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "--storage", filled, "--meter", "nobody")
    assert (code, out.splitlines()[0].split(",")[:3]) == (0, ["meter", "slot", "read_at"])
    code, out, _ = _run(capsys, "--storage", filled, "--meter", "nobody", "--format", "json")
    assert (code, json.loads(out)) == (0, [])


def test_the_config_names_the_storage(
    filled: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "k382.toml"
    config.write_text(
        f'[storage]\nurl = "{filled}"\n\n[[meters]]\nname = "house"\nport = "socket://127.0.0.1:1"\n'
    )
    code, out, _ = _run(capsys, "--config", str(config), "--format", "jsonl")
    assert code == 0
    assert len(out.splitlines()) == 12


def test_bad_options_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    code, _, err = _run(capsys, "--storage", url, "--since", "yesterday")
    assert code == 2
    assert "--since" in err
    code, _, err = _run(capsys, "--storage", url, "--since", "2026-03-02", "--until", "2026-03-01")
    assert code == 2
    assert "--until" in err
    code, _, err = _run(capsys, "--storage", "mysql://x/y")
    assert code == 2
    assert "storage.url" in err
    bad = tmp_path / "bad.toml"
    bad.write_text("[storage]\nurl = 5\n")
    code, _, err = _run(capsys, "--config", str(bad))
    assert code == 2
    assert "storage.url" in err


def test_a_failed_export_leaves_no_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"x" * 4096)
    target = tmp_path / "out.csv"
    code, _, err = _run(capsys, "--storage", f"sqlite:///{garbage}", "--output", str(target))
    assert code == 1
    assert "error" in err
    assert list(tmp_path.iterdir()) == [garbage]


ROWS = 100_000
PEAK_RSS = (
    "import resource, sys\n"
    "from kamstrup382.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    "sys.exit(code)\n"
)


def _export_peak_kib(*args: str) -> int:
    """Run ``k382 export ARGS`` in a process of its own; its peak resident memory in KiB."""
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, "export", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


@pytest.mark.slow
def test_export_streams_in_bounded_memory(storage_url: str, tmp_path: Path) -> None:
    """100,000 rows out in the memory of a handful: the peak does not grow with the rows."""
    meters, per_meter = 10, ROWS // 10
    with open_storage(storage_url) as storage:
        for m in range(meters):
            storage.record([reading(f"m{m}", i) for i in range(per_meter)])
    first_hour = (START + 4 * STEP).isoformat()
    for what, fmt in (("readings", "jsonl"), ("consumption", "csv")):
        small, full = tmp_path / f"{what}.small", tmp_path / f"{what}.full"
        common = ["--storage", storage_url, "--what", what, "--format", fmt]
        baseline = _export_peak_kib(*common, "--until", first_hour, "--output", str(small))
        peak = _export_peak_kib(*common, "--output", str(full))
        with small.open() as f:
            assert sum(1 for _ in f) == (40 if what == "readings" else 1 + 30)
        with full.open() as f:
            assert sum(1 for _ in f) == (ROWS if what == "readings" else 1 + ROWS - meters)
        # 100,000 records held at once would take well over 100 MiB more than 40 of them
        growth = (peak - baseline) / 1024
        assert growth < 24, f"{what}: peak {peak / 1024:.0f} MiB, {growth:.0f} MiB over 40 rows"


def test_a_reader_that_stops_early_ends_the_export_quietly(tmp_path: Path) -> None:
    """``k382 export | head -1``: no error message, no traceback; a filter's SIGPIPE status."""
    url = f"sqlite:///{tmp_path / 'many.sqlite'}"
    with open_storage(url) as storage:  # far more than a pipe's buffer holds
        storage.record([reading("house", index) for index in range(4000)], [])
    with subprocess.Popen(
        [sys.executable, "-m", "kamstrup382", "export", "--storage", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline().startswith(b"meter,slot,read_at,")
        process.stdout.close()
        err = process.stderr.read()
        assert process.wait(timeout=60) == 141
    assert err == b""


def test_timings_are_shown_to_the_millisecond(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'ms.sqlite'}"
    record = dataclasses.replace(
        reading("house", 0), answer_delay=0.250999999999749, duration=5.8330000001
    )
    with open_storage(url) as storage:
        storage.record([record], [])
    assert main(["export", "--storage", url, "--format", "jsonl"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert (row["timing"]["answer_delay_s"], row["timing"]["duration_s"]) == (0.251, 5.833)
    assert main(["export", "--storage", url]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert ",0.251,5.833," in line

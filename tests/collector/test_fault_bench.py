"""The reliability benchmark's harness, small: ``bench/bench_faults.py`` as a user runs it, with
a few hundred fault-injected readouts of every fault kind; not one wrong value stored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from kamstrup382.emulator.faults import FAULT_KINDS

BENCH = Path(__file__).parent.parent.parent / "bench" / "bench_faults.py"
#: Every kind often enough to be drawn in a few hundred requests, the blind ones most.
FAULTS = ",".join(f"{kind}={0.1 if kind in ('shift', 'swap') else 0.04}" for kind in FAULT_KINDS)


def test_a_few_hundred_faulty_readouts_store_no_wrong_value(tmp_path: Path) -> None:
    figures_file = tmp_path / "figures.json"
    command = [
        *(sys.executable, str(BENCH), "--meters", "30", "--slots", "10", "--faults", FAULTS),
        # a short answer window and backoff: the slots take a fraction of a second each; about
        # half of the requests get a fault here: more retries than by default
        *("--answer-timeout", "0.1", "--answer-margin", "0.15", "--backoff", "0.02"),
        *("--retries", "4"),
        *("--json", str(figures_file), "--quiet"),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env={**os.environ}, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "wrong values stored: 0" in done.stdout
    figures = json.loads(figures_file.read_text(encoding="utf-8"))
    assert figures["readouts"] == 300
    assert figures["wrong"] == 0
    assert figures["readings"] >= 0.9 * figures["readouts"]
    assert figures["readings"] + sum(figures["failures"].values()) == figures["readouts"]
    for kind in FAULT_KINDS:
        assert figures["kinds"][kind]["injected"] > 0, kind
    # the damage the block check cannot see never gave a reading, it cost an attempt
    for kind in ("shift", "swap"):
        assert figures["kinds"][kind]["refused"] >= figures["kinds"][kind]["injected"] - 1

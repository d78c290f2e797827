"""Bad input is an error, never a traceback: huge or non-finite durations, a non-UTF-8 or deeply
nested config, a bad host in a port, wrong numbers on the command line. Each gives exit status
2 and one line on standard error naming the key or the argument; generated configs and
arguments (hypothesis) get either that or success."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kamstrup382.cli import main
from kamstrup382.collector.config import load_config
from kamstrup382.errors import ConfigError
from kamstrup382.outputs.mqtt_settings import MqttSettings
from kamstrup382.storage.url import open_storage

#: A loopback port nobody listens on: a read with accepted arguments fails at once to connect.
REFUSED = "socket://127.0.0.1:1"


def run(*argv: str) -> tuple[int, str]:
    """``k382 ARGV`` in this process: its exit status and standard error."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(argv))
    return code, err.getvalue()


def assert_one_line_error(code: int, err: str, name: str) -> None:
    assert "Traceback" not in err
    assert code == 2, err
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, err
    assert name in lines[0], err


def write_config(directory: Path, body: str | bytes) -> Path:
    path = directory / "k382.toml"
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    return path


def base_config(directory: Path) -> str:
    return f'[storage]\nurl = "sqlite:///{directory / "r.sqlite"}"\n'


METER = '[[meters]]\nname = "m"\nport = "socket://127.0.0.1:1"\n'


# -- configs: each nasty kind named in the issue ----------------------------------------------


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ('[collector]\ninterval = "99999999999999d"\n', "collector.interval"),
        ("[collector]\ninterval = 1e300\n", "collector.interval"),
        ("[collector]\ngrace = 1e300\n", "collector.grace"),
        ("[collector]\nlease = inf\n", "collector.lease"),
        ("[collector]\nbackoff = nan\n", "collector.backoff"),
        ('[collector]\ndeadline = "1e300s"\n', "collector.deadline"),
        ('[collector]\nanswer_timeout = "' + "9" * 400 + 'd"\n', "collector.answer_timeout"),
        ("[collector]\nflush_interval = 9223372036854775807\n", "collector.flush_interval"),
        (METER + 'jitter = "99999999999999d"\n', "meters[0].jitter"),
        ("[http]\nrefresh = 1e300\n", "http.refresh"),
        ('[[meters]]\nname = "m"\nport = "socket://[zz]:1"\n', "meters[0].port"),
        ('[[meters]]\nname = "m"\nport = "rfc2217://[::1:1"\n', "meters[0].port"),
        ("[mqtt]\nx = " + "[" * 40 + "]" * 40 + "\n", "mqtt.x"),
        ("[collector]\nid = " + "{a = " * 40 + "1" + "}" * 40 + "\n", "collector.id"),
    ],
)
def test_bad_config_values_are_one_line_naming_the_key(tmp_path: Path, body: str, key: str) -> None:
    path = write_config(tmp_path, base_config(tmp_path) + body)
    for argv in (
        ["status", "--config", str(path)],
        ["collect", "--config", str(path), "--once"],
        ["serve", "--config", str(path)],
    ):
        assert_one_line_error(*run(*argv), name=key)


@pytest.mark.parametrize(
    "body",
    [
        b'[collector]\nid = "\xff\xfe"\n',
        b"\xef\xbb\xbf\x80[collector]\n",
        ("x = " + "[" * 5000 + "]" * 5000 + "\n").encode(),
        ("x = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n").encode(),
    ],
    ids=["latin-1", "bad-utf-8", "nested-arrays", "nested-tables"],
)
def test_an_unreadable_config_file_is_one_line_naming_the_file(tmp_path: Path, body: bytes) -> None:
    path = write_config(tmp_path, body)
    for argv in (
        ["status", "--config", str(path)],
        ["collect", "--config", str(path), "--once"],
        ["export", "--config", str(path)],
        ["serve", "--config", str(path)],
    ):
        assert_one_line_error(*run(*argv), name=str(path))


@pytest.mark.parametrize(
    ("variable", "value", "key"),
    [
        ("K382_COLLECTOR_INTERVAL", "1e309", "collector.interval"),
        ("K382_COLLECTOR_GRACE", "99999999999999d", "collector.grace"),
        ("K382_COLLECTOR_RETRIES", "9" * 5000, "collector.retries"),
        ("K382_HTTP_REFRESH", "nan", "http.refresh"),
    ],
)
def test_bad_environment_values_are_one_line_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, key: str
) -> None:
    path = write_config(tmp_path, base_config(tmp_path) + METER + "[http]\nrefresh = 1\n")
    monkeypatch.setenv(variable, value)
    code, err = run("collect", "--config", str(path), "--once")
    assert_one_line_error(code, err, name=key)
    assert len(err) < 200, err


# -- arguments --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["read", "--watch", "1e309", "--count", "1", REFUSED], "--watch"),
        (["read", "--watch", "nan", "--count", "1", REFUSED], "--watch"),
        (["read", "--watch", "1e300", "--count", "1", REFUSED], "--watch"),
        (["read", "--timeout", "inf", REFUSED], "--timeout"),
        (["read", "--timeout", "nan", REFUSED], "--timeout"),
        (["read", "--deadline", "1e309", REFUSED], "--deadline"),
        (["read", "--deadline", "nan", REFUSED], "--deadline"),
        (["read", "--retries", "9" * 5000, REFUSED], "--retries"),
        (["read", "socket://[zz]:1"], "socket://[zz]:1"),
        (["read", "rfc2217://[::1:1"], "rfc2217://[::1:1"),
        (["emulate", "--speed", "nan"], "--speed"),
        (["emulate", "--speed", "inf"], "--speed"),
        (["emulate", "--delay", "nan"], "--delay"),
        (["emulate", "--delay", "1e309"], "--delay"),
        (["emulate", "--delay", "0.5-0.1"], "--delay"),
        (["collect", "--emulator", "1", "--speed", "nan"], "--speed"),
        (["collect", "--emulator", "1", "--speed", "1e309"], "--speed"),
        (["collect", "--emulator", "1", "--interval", "99999999999999d"], "--interval"),
        (["demo", "--speed-factor", "nan"], "--speed-factor"),
        (["demo", "--line-speed", "nan"], "--line-speed"),
        (["demo", "--interval", "1e300"], "--interval"),
        (["demo", "--start", "9999-12-31"], "--start"),
        (["demo", "--start", "0001-01-01"], "--start"),
    ],
)
def test_bad_arguments_are_one_line_naming_the_argument(argv: list[str], name: str) -> None:
    assert_one_line_error(*run(*argv), name=name)


def test_usage_errors_are_one_line_but_k382_alone_shows_the_help() -> None:
    code, err = run("nothing")
    assert_one_line_error(code, err, "nothing")
    code, err = run("read")
    assert_one_line_error(code, err, "PORT")
    code, err = run()
    assert code == 2
    assert "Usage:" in err
    assert "read" in err


# -- through a process: what a user sees ------------------------------------------------------


def k382(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kamstrup382", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
        check=False,
    )


def test_a_process_given_bad_input_exits_2_with_one_line(tmp_path: Path) -> None:
    done = k382("read", "--watch", "1e309", "--count", "2", REFUSED)
    assert_one_line_error(done.returncode, done.stderr, "--watch")
    path = write_config(tmp_path, base_config(tmp_path).encode() + b'[http]\ntitle = "\xe9"\n')
    done = k382("collect", "--config", str(path), "--once")
    assert_one_line_error(done.returncode, done.stderr, str(path))


# -- generated configs and arguments ----------------------------------------------------------

NASTY_TEXT = st.sampled_from(
    [
        "99999999999999d",
        "1e300",
        "1e309",
        "nan",
        "-inf",
        "0",
        "-1s",
        "15m",
        "1h30m",
        "500ms",
        "9" * 30 + "ms",
        "socket://[zz]:1",
        "socket://127.0.0.1:99999",
        "socket://127.0.0.1:4001",
        "rfc2217://[::1]:1",
        "/dev/ttyUSB0",
        "sum7",
        "8N1",
        "",
        " ",
        "a\x00b",
        "[::1]:80",
    ]
)
NUMBERS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(
        lambda x: {"inf": "inf", "-inf": "-inf", "nan": "nan"}.get(repr(x), repr(x))
    ),
    st.sampled_from(["1e300", "-1e300", "1e-300", "true", "false"]),
)
SCALARS = st.one_of(NUMBERS, NASTY_TEXT.map(lambda s: '"' + s.replace("\x00", "\\u0000") + '"'))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.builds(lambda v: "{ k = " + v + " }", inner),
    ),
    max_leaves=8,
)
COLLECTOR_KEYS = [
    "interval",
    "jitter",
    "retries",
    "backoff",
    "answer_timeout",
    "answer_margin",
    "deadline",
    "lease",
    "id",
    "batch_size",
    "flush_interval",
    "grace",
    "keep_connected",
    "nonsense",
]
METER_KEYS = ["port", "line", "bcc", "interval", "jitter", "deadline", "retries", "shared_line"]
HTTP_KEYS = ["listen", "refresh", "title", "token"]
MQTT_KEYS = [
    "url",
    "qos",
    "keepalive",
    "timeout",
    "reconnect_delay",
    "reconnect_max",
    "stop_timeout",
    "outbox_lease",
    "batch_size",
    "topic_prefix",
]


def _table(name: str, keys: list[str]) -> st.SearchStrategy[tuple[str, dict[str, str]]]:
    return st.tuples(
        st.just(name), st.dictionaries(st.sampled_from(keys), VALUES, min_size=1, max_size=3)
    )


TABLES = st.lists(
    st.one_of(
        _table("collector", COLLECTOR_KEYS),
        _table("meters", METER_KEYS),
        _table("http", HTTP_KEYS),
        _table("mqtt", MQTT_KEYS),
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda t: t[0],
)


def render(tables: list[tuple[str, dict[str, str]]]) -> str:
    out = []
    for name, values in tables:
        out.append(f"[[{name}]]\nname = 'm'" if name == "meters" else f"[{name}]")
        out.extend(f"{key} = {value}" for key, value in values.items())
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("bad-input")
    open_storage(f"sqlite:///{directory / 'r.sqlite'}").close()  # status reads, never creates
    return directory


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables=TABLES)
def test_generated_configs_load_or_fail_in_one_line(
    workdir: Path, tables: list[tuple[str, dict[str, str]]]
) -> None:
    body = render(tables)
    path = write_config(workdir, base_config(workdir) + body)
    code, err = run("status", "--config", str(path))
    assert "Traceback" not in err
    if code != 0:
        lines = err.strip("\n").splitlines()
        assert code == 2, (body, err)
        assert len(lines) == 1, (body, err)
        # the dotted key of a value, or the file for what TOML itself refuses
        named = [f"{name}." for name, _ in tables] + [str(path), "meters[0]"]
        assert any(n in lines[0] for n in named), (body, err)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.dictionaries(st.sampled_from(MQTT_KEYS), VALUES, min_size=1, max_size=4))
def test_generated_mqtt_tables_parse_or_name_the_key(workdir: Path, values: dict[str, str]) -> None:
    """``[mqtt]`` is kept raw by the config and checked by the output (``k382 collect``)."""
    body = render([("mqtt", values)])
    path = write_config(workdir, base_config(workdir) + body)
    try:
        MqttSettings.parse(load_config(path, env={}).sections["mqtt"])
    except ConfigError as exc:
        assert exc.key.startswith("mqtt.") or exc.key == str(path), (body, exc)
        assert "\n" not in str(exc), (body, exc)


ARGUMENT_TEXT = st.one_of(NUMBERS, NASTY_TEXT)


@settings(max_examples=150, deadline=None)
@given(
    option=st.sampled_from(["--watch", "--timeout", "--deadline", "--retries"]),
    value=ARGUMENT_TEXT,
    port=st.sampled_from([REFUSED, "socket://[zz]:1", "socket://127.0.0.1:0", "rfc2217://[::1:1"]),
)
def test_generated_read_arguments_are_accepted_or_fail_in_one_line(
    option: str, value: str, port: str
) -> None:
    argv = ["read", option, value, port]
    if option == "--watch":
        argv[1:1] = ["--count", "1"]
    code, err = run(*argv)
    assert "Traceback" not in err
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, (argv, err)
    if code == 2:
        assert option in lines[0] or port in lines[0], (argv, err)
    else:
        # accepted: the read itself fails to connect to the refused port
        assert (code, port) == (1, REFUSED), (argv, err)
        assert lines[0].startswith("error: connection:"), (argv, err)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    command=st.sampled_from(
        [
            # (the command, an option given a generated value, what it says once all are accepted)
            (["collect", "--config", "{empty}"], "--interval", "no meters"),
            (["collect", "--config", "{empty}"], "--speed", "no meters"),
            (["demo", "--db", "{old}"], "--interval", "fresh"),
            (["demo", "--db", "{old}"], "--speed-factor", "fresh"),
            (["demo", "--db", "{old}"], "--line-speed", "fresh"),
            (["demo", "--db", "{old}"], "--start", "fresh"),
            (["emulate", "--tcp", "127.0.0.1:70000"], "--speed", "--tcp"),
        ]
    ),
    value=ARGUMENT_TEXT,
)
def test_generated_options_of_other_commands_are_accepted_or_fail_in_one_line(
    workdir: Path, command: tuple[list[str], str, str], value: str
) -> None:
    """Each command stops on a later problem of its own once the generated value is accepted,
    so nothing is started."""
    empty = write_config(workdir, base_config(workdir))
    old = workdir / "old.sqlite"
    old.write_bytes(b"")
    prefix, option, accepted = command
    argv = [arg.format(empty=empty, old=old) for arg in prefix] + [f"{option}={value}"]
    code, err = run(*argv)
    assert "Traceback" not in err
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, (argv, err)
    assert option in lines[0] or accepted in lines[0], (argv, err)
    assert code == 2, (argv, err)  # k382 demo's --db that exists is a usage error too

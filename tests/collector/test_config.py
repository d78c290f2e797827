"""The config file: defaults, durations, environment overrides, and errors that name the key."""

from __future__ import annotations

import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from kamstrup382.collector.config import (
    Config,
    HttpConfig,
    load_config,
    parse_config,
    parse_duration,
)
from kamstrup382.errors import ConfigError
from kamstrup382.protocol import BccMode
from kamstrup382.reader.policy import RetryPolicy, Timing
from kamstrup382.reader.port import LineMode
from kamstrup382.settings import Listen

BASE = """
[storage]
url = "sqlite:///tmp/x.sqlite"
"""


def parse(text: str, env: dict[str, str] | None = None) -> Config:
    return parse_config(tomllib.loads(text), env=env or {})


def test_minimal_meter_gets_the_defaults() -> None:
    cfg = parse(BASE + '[[meters]]\nname = "a"\nport = "socket://127.0.0.1:4001"\n')
    (meter,) = cfg.meters
    assert meter.name == "a"
    assert meter.line is LineMode.AUTO  # a raw TCP gateway: 8N1 or its own 7E1, told by the reply
    assert meter.bcc is BccMode.AUTO
    assert meter.interval == timedelta(minutes=15)
    assert meter.jitter == timedelta(0)
    assert meter.shared_line == "socket://127.0.0.1:4001"
    assert meter.retry == RetryPolicy()
    assert meter.timing == Timing()
    assert meter.timing.deadline is None
    assert cfg.storage.url == "sqlite:///tmp/x.sqlite"
    assert cfg.collector.interval == timedelta(minutes=15)
    assert cfg.collector.id
    assert dict(cfg.sections) == {}


@pytest.mark.parametrize(
    ("port", "line"),
    [
        ("socket://gw:4001", LineMode.AUTO),
        ("/dev/ttyUSB0", LineMode.SEVEN_E_ONE),
        ("/dev/serial/by-id/usb-FTDI-if00-port0", LineMode.SEVEN_E_ONE),
        ("rfc2217://gw:2217", LineMode.SEVEN_E_ONE),
        ("COM3", LineMode.SEVEN_E_ONE),
    ],
)
def test_line_mode_default_depends_on_the_port(port: str, line: LineMode) -> None:
    cfg = parse(BASE + f'[[meters]]\nname = "a"\nport = "{port}"\n')
    assert cfg.meters[0].line is line


def test_collector_defaults_apply_and_meters_override_them() -> None:
    cfg = parse(
        BASE
        + """
[collector]
interval = "5m"
jitter = 10
retries = 4
backoff = 0.5
answer_timeout = 1.0
deadline = "20s"
lease = "1m"
id = "c-1"

[[meters]]
name = "a"
port = "socket://127.0.0.1:1"

[[meters]]
name = "b"
port = "/dev/ttyUSB0"
line = "8n1"
bcc = "XOR"
interval = "1h30m"
jitter = "0s"
retries = 0
shared_line = "bus-1"
"""
    )
    a, b = cfg.meters
    assert a.interval == timedelta(minutes=5)
    assert a.jitter == timedelta(seconds=10)
    assert a.retry == RetryPolicy(retries=4, backoff=0.5)
    assert a.timing == Timing(answer_timeout=1.0, deadline=20.0)
    assert b.interval == timedelta(hours=1, minutes=30)
    assert b.jitter == timedelta(0)
    assert b.retry == RetryPolicy(retries=0, backoff=0.5)
    assert b.timing == a.timing
    assert b.line is LineMode.EIGHT_N_ONE
    assert b.bcc is BccMode.XOR
    assert b.shared_line == "bus-1"
    assert cfg.collector.lease == timedelta(minutes=1)
    assert cfg.collector.id == "c-1"
    assert cfg.meter("b") is b


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (900, 900.0),
        (2.5, 2.5),
        ("900", 900.0),
        ("15m", 900.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1h 30m 15s", 5415.0),
        ("250ms", 0.25),
        ("1d", 86400.0),
        ("366d", 366 * 86400.0),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text, "k").total_seconds() == seconds


@pytest.mark.parametrize(
    "text",
    [
        *("", "15 minutes", "m15", "1h x", "-5", 0, True, [1], "inf", "nan", "1e309"),
        *("99999999999999d", 1e300, float("inf"), float("nan"), 2**63, 10**400, "367d"),
        *("9" * 400 + "d", "1e300s", "1d 1e308s"),
    ],
)
def test_bad_durations_name_the_key(text: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_duration(text, "collector.interval")
    assert info.value.key == "collector.interval"


METER = '[[meters]]\nname = "a"\nport = "socket://127.0.0.1:4001"\n'

BAD_CONFIGS: list[tuple[str, str, str]] = [
    # (toml, expected key, a word of the problem)
    ("[foo]\nx = 1\n", "foo", "unknown section"),
    ("meters = 3\n", "meters", "array"),
    ("[[meters]]\nport = '/dev/ttyUSB0'\n", "meters[0].name", "missing"),
    ("[[meters]]\nname = 'a'\n", "meters[0].port", "missing"),
    (METER + "[[meters]]\nname = 'b'\nport = 'tcp://x:1'\n", "meters[1].port", "bad port"),
    (METER + "[[meters]]\nname = 'b'\nport = 'socket://x:99999'\n", "meters[1].port", "range"),
    (METER + "[[meters]]\nname = 'b'\nport = 'socket://x'\n", "meters[1].port", "bad port"),
    (METER + "[[meters]]\nname = 'b'\nport = 'ttyUSB0'\n", "meters[1].port", "absolute"),
    (METER + "[[meters]]\nname = 'b'\nport = 42\n", "meters[1].port", "string"),
    (METER + "[[meters]]\nname = 'b'\nport = ''\n", "meters[1].port", "empty"),
    (METER + METER, "meters[1].name", "duplicate"),
    (
        "[[meters]]\nname = 'a'\nport = '/dev/x'\nunique_id = 'm'\n"
        "[[meters]]\nname = 'b'\nport = '/dev/y'\nunique_id = 'm'\n",
        "meters[1].unique_id",
        "duplicate",
    ),
    (
        METER + "[[meters]]\nname = 'b'\nport = '/dev/x'\nunique_id = 'a b'\n",
        "meters[1].unique_id",
        "bad name",
    ),
    ("[http]\npublic_url = 'ftp://x'\n", "http.public_url", "http"),
    (METER + "[[meters]]\nname = 'a b'\nport = '/dev/x'\n", "meters[1].name", "bad name"),
    (METER + "[[meters]]\nname = 'b'\nport = '/dev/x'\nline = '7N1'\n", "meters[1].line", "7E1"),
    (METER + "[[meters]]\nname = 'b'\nport = '/dev/x'\nbcc = 'crc'\n", "meters[1].bcc", "sum7"),
    (
        METER + "[[meters]]\nname = 'b'\nport = '/dev/x'\ninterval = '0s'\n",
        "meters[1].interval",
        "> 0",
    ),
    (
        METER + "[[meters]]\nname = 'b'\nport = '/dev/x'\njitter = '-1'\n",
        "meters[1].jitter",
        ">= 0",
    ),
    (
        METER + "[[meters]]\nname = 'b'\nport = '/dev/x'\nretries = -1\n",
        "meters[1].retries",
        "between",
    ),
    (
        METER + "[[meters]]\nname = 'b'\nport = '/dev/x'\nretries = 1.5\n",
        "meters[1].retries",
        "integer",
    ),
    (
        METER + "[[meters]]\nname = 'b'\nport = '/dev/x'\nbackoff = 'x'\n",
        "meters[1].backoff",
        "bad duration",
    ),
    (
        METER + "[[meters]]\nname = 'b'\nport = '/dev/x'\nanswer_timeout = 0\n",
        "meters[1].answer_timeout",
        "> 0",
    ),
    (
        METER + "[[meters]]\nname = 'b'\nport = '/dev/x'\nbaud = 9600\n",
        "meters[1].baud",
        'not a setting of protocol = "iec"',
    ),
    (
        METER + "[[meters]]\nname = 'b'\nport = '/dev/x'\nprotocol = 'kmp'\nbaud = 300\n",
        "meters[1].baud",
        "expected one of 1200, 2400, 4800, 9600, 19200, got 300",
    ),
    (
        METER + "[[meters]]\nname = 'b'\nport = '/dev/x'\nprotocol = 'kmp'\nbcc = 'xor'\n",
        "meters[1].bcc",
        'not a setting of protocol = "kmp"',
    ),
    (
        METER + "[[meters]]\nname = 'b'\nport = '/dev/x'\nprotocol = 'kmp'\nregisters = []\n",
        "meters[1].registers",
        "expected a list of register names",
    ),
    (
        METER
        + "[[meters]]\nname = 'b'\nport = '/dev/x'\nprotocol = 'kmp'\n"
        + "registers = ['energy', 'volts']\n",
        "meters[1].registers[1]",
        "no KMP register 'volts'",
    ),
    (
        METER
        + "[[meters]]\nname = 'b'\nport = '/dev/x'\nprotocol = 'kmp'\n"
        + "registers = ['power', 'power']\n",
        "meters[1].registers[1]",
        "asked for twice",
    ),
    (
        "[collector]\nprotocol = 'kmpp'\n" + METER,
        "collector.protocol",
        "expected one of iec, kmp, auto",
    ),
    (
        METER + "[[meters]]\nname = 'b'\nport = '/dev/x'\nshared_line = 3\n",
        "meters[1].shared_line",
        "string",
    ),
    ("meters = [1]\n", "meters[0]", "table"),
    ("[storage]\nurl = 'mysql://x'\n", "storage.url", "unsupported"),
    ("[storage]\nurl = 'sqlite:///'\n", "storage.url", "path"),
    ("[storage]\nurl = 'sqlite:///x'\npath = 'x'\n", "storage.path", "unknown key"),
    ("storage = 1\n", "storage", "table"),
    ("[collector]\ninterval = 'soon'\n", "collector.interval", "bad duration"),
    ("[collector]\nlease = 0\n", "collector.lease", "> 0"),
    ("[collector]\nbatch_size = 0\n", "collector.batch_size", "between"),
    ("[collector]\nflush_interval = -1\n", "collector.flush_interval", "> 0"),
    ("[collector]\nid = ''\n", "collector.id", "empty"),
    ("[collector]\nwhatever = 1\n", "collector.whatever", "unknown key"),
    ("mqtt = 'broker'\n", "mqtt", "table"),
    ("[storage]\nurl = 'sqlite:///x?journal=off'\n", "storage.url", "unknown sqlite option"),
    (METER + "[[meters]]\nname = 'b'\nport = 'socket://x:0'\n", "meters[1].port", "range"),
    (METER + "[[meters]]\nname = 'b'\nport = 'loop://'\n", "meters[1].port", "bad port"),
    ("http = 1\n", "http", "table"),
    ("[http]\nport = 80\n", "http.port", "unknown key"),
    ("[http]\nlisten = '::1:80'\n", "http.listen", "brackets"),
    ("[http]\nlisten = 'h:70000'\n", "http.listen", "0..65535"),
    ("[http]\nlisten = ''\n", "http.listen", "empty"),
    ("[http]\ntoken = ''\n", "http.token", "empty"),
    ("[http]\ntitle = 3\n", "http.title", "string"),
    ("[http]\nrefresh = -1\n", "http.refresh", ">= 0"),
    ("[http]\nrefresh = true\n", "http.refresh", "duration"),
]


@pytest.mark.parametrize(("text", "key", "problem"), BAD_CONFIGS)
def test_bad_config_names_the_key(text: str, key: str, problem: str) -> None:
    doc = text if "[storage]" in text or "storage =" in text else text + BASE
    with pytest.raises(ConfigError) as info:
        parse(doc)
    assert info.value.key == key
    assert problem in info.value.problem
    assert str(info.value).startswith(f"{key}: ")


def test_owned_sections_are_kept_raw() -> None:
    cfg = parse(BASE + '[mqtt]\nhost = "127.0.0.1"\nport = 1883\n[http]\nlisten = ":8080"\n')
    assert dict(cfg.sections["mqtt"]) == {"host": "127.0.0.1", "port": 1883}
    assert "prometheus" not in cfg.sections
    assert "http" not in cfg.sections  # the dashboard's table is parsed with the others
    with pytest.raises(TypeError):
        cfg.sections["mqtt"]["host"] = "x"  # type: ignore[index]


def test_environment_overrides_secrets_and_typed_keys() -> None:
    env = {
        "K382_STORAGE_URL": "postgresql://u:secret@127.0.0.1/k382",
        "K382_MQTT_PASSWORD": "s3cret",
        "K382_MQTT_PORT": "8883",
        "K382_PROMETHEUS_PORT": "9100",  # no [prometheus] table: ignored
        "K382_COLLECTOR_RETRIES": "5",
        "K382_COLLECTOR_LEASE": "30s",
        "OTHER_VAR": "x",
    }
    cfg = parse(BASE + '[mqtt]\nhost = "h"\nport = 1883\n', env)
    assert cfg.storage.url == "postgresql://u:secret@127.0.0.1/k382"
    assert dict(cfg.sections["mqtt"]) == {"host": "h", "port": 8883, "password": "s3cret"}
    assert "prometheus" not in cfg.sections
    assert cfg.collector.retry.retries == 5
    assert cfg.collector.lease == timedelta(seconds=30)


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"K382_COLLECTOR_RETRIES": "many"}, "collector.retries"),
        ({"K382_COLLECTOR_NOPE": "1"}, "collector.nope"),
        ({"K382_STORAGE_URL": "ftp://x"}, "storage.url"),
    ],
)
def test_bad_environment_values_name_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(BASE, env)
    assert info.value.key == key


def test_default_storage_url_is_a_sqlite_file() -> None:
    pytest.importorskip("kamstrup382.storage.url")
    cfg = parse("", {})
    assert cfg.storage.url.startswith("sqlite:///")


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "k382.toml"
    path.write_text(BASE + METER, encoding="utf-8")
    cfg = load_config(path, env={})
    assert cfg.path == path
    assert [m.name for m in cfg.meters] == ["a"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "not found"),
        ("[[meters]\n", "not valid TOML"),
        (b'title = "\xe9"\n', "not UTF-8"),
        ("x = " + "[" * 5000 + "]" * 5000, "nested too deeply"),
        ("x = " + "{a = " * 3000 + "1" + "}" * 3000, "nested too deeply"),
    ],
)
def test_load_config_file_errors_name_the_file(
    tmp_path: Path, content: str | bytes | None, problem: str
) -> None:
    path = tmp_path / "k382.toml"
    if content is not None:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.key == str(path)
    assert problem in info.value.problem


def test_config_values_are_frozen() -> None:
    cfg = parse(BASE + METER)
    with pytest.raises(AttributeError):
        cfg.meters[0].port = "x"  # type: ignore[misc]
    data: dict[str, Any] = {}
    assert parse_config(data, env={"K382_STORAGE_URL": "sqlite:///y"}).storage.url == "sqlite:///y"
    assert data == {}


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "k382.toml"


def test_the_example_config_loads_with_its_outputs_uncommented() -> None:
    config = load_config(EXAMPLE, env={})
    meters = {m.name: m for m in config.meters}
    assert list(meters) == ["house", "garage", "flat-1", "flat-2"]
    assert meters["house"].line is LineMode.AUTO
    assert meters["garage"].line is LineMode.SEVEN_E_ONE
    assert meters["garage"].interval == timedelta(minutes=5)
    assert meters["flat-1"].shared_line == meters["flat-2"].shared_line == "gateway-60"
    assert meters["flat-2"].bcc is BccMode.XOR
    assert config.collector.jitter == timedelta(seconds=30)
    # the commented output tables are valid TOML with the sections the outputs read
    text = EXAMPLE.read_text(encoding="utf-8")
    tail = text[text.index("# [mqtt]") :].splitlines()
    uncommented = parse(BASE + _regroup(tail))
    sections = dict(uncommented.sections)
    assert sorted(sections) == ["influxdb", "mqtt", "prometheus"]
    assert sections["prometheus"]["listen"] == "127.0.0.1:9382"
    assert sections["influxdb"]["database"] == "energy"
    assert uncommented.http == HttpConfig(listen=Listen("127.0.0.1", 8382))


def _regroup(lines: list[str]) -> str:
    """The commented ``# [table]`` / ``# key = value`` lines, uncommented, prose dropped."""
    kept = []
    for line in lines:
        body = line.removeprefix("#").strip()
        if body.startswith("[") or ("=" in body and not body.endswith(":")):
            kept.append(body)
    return "\n".join(kept) + "\n"


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("", {}, False),
        ("[collector]\nkeep_connected = true\n", {}, True),
        ("[collector]\nkeep_connected = false\n", {"K382_COLLECTOR_KEEP_CONNECTED": "yes"}, True),
        ("[collector]\nkeep_connected = true\n", {"K382_COLLECTOR_KEEP_CONNECTED": "0"}, False),
        ("", {"K382_COLLECTOR_KEEP_CONNECTED": " On "}, True),
    ],
)
def test_keep_connected_from_the_file_or_the_environment(
    text: str, env: dict[str, str], expected: bool
) -> None:
    assert parse(BASE + text, env).collector.keep_connected is expected


@pytest.mark.parametrize(
    ("text", "env"),
    [
        ('[collector]\nkeep_connected = "sometimes"\n', {}),
        ("[collector]\nkeep_connected = 1\n", {}),
        ("", {"K382_COLLECTOR_KEEP_CONNECTED": "maybe"}),
    ],
)
def test_a_bad_keep_connected_names_the_key(text: str, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse(BASE + text, env)
    assert info.value.key == "collector.keep_connected"
    assert "true or false" in str(info.value)


def test_the_http_table_is_parsed_with_the_others() -> None:
    assert parse(BASE).http == HttpConfig(listen=None, token=None, title=None, refresh=30.0)
    text = '[http]\nlisten = "[::1]:0"\ntoken = "t0ken"\ntitle = "Our house"\nrefresh = "1m"\n'
    http = parse(BASE + text, {"K382_HTTP_TOKEN": "from-env"}).http
    assert http == HttpConfig(Listen("::1", 0), "from-env", "Our house", 60.0)
    assert parse(BASE + "[http]\nrefresh = 0\n", {"K382_HTTP_REFRESH": "5"}).http.refresh == 5.0
    # without the table the environment does not make one
    assert parse(BASE, {"K382_HTTP_TOKEN": "x"}).http == HttpConfig()
    assert parse(BASE + '[http]\ntoken_file = "token"\n').http.token_file == "token"
    with pytest.raises(ConfigError) as info:
        parse(BASE + "[http]\ntoken_file = 7\n")
    assert info.value.key == "http.token_file"


def test_a_meter_hands_its_timing_and_retries_to_the_reader_whole() -> None:
    cfg = parse(
        BASE
        + "[collector]\nanswer_margin = 0\nbackoff = 0\n"
        + METER
        + "answer_timeout = '250ms'\ndeadline = 9\nretries = 1\n"
    )
    (meter,) = cfg.meters
    assert meter.timing == Timing(answer_timeout=0.25, answer_margin=0.0, deadline=9.0)
    assert meter.retry == RetryPolicy(retries=1, backoff=0.0)
    assert cfg.collector.timing == Timing(answer_margin=0.0)


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("[mqtt]\nx = " + "[" * 9 + "]" * 9, "mqtt.x" + "[0]" * 7),
        ("[prometheus]\nx = " + "{a = " * 9 + "1" + "}" * 9, "prometheus.x" + ".a" * 7),
        (METER + "shared_line = " + "[" * 12 + "]" * 12, "meters[0].shared_line" + "[0]" * 6),
    ],
)
def test_a_deeply_nested_value_is_refused_naming_its_key(body: str, key: str) -> None:
    with pytest.raises(ConfigError, match="nested more than") as info:
        parse_config(tomllib.loads(body), env={})
    assert info.value.key == key


def test_the_storage_table_says_what_happens_when_the_storage_fails(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "k382.toml"
    path.parent.mkdir()
    text = '[storage]\nretries = 5\nretry_delay = "250ms"\nmax_pending = 2000\nspill_dir = "st"\n'
    path.write_text(text, encoding="utf-8")
    storage = load_config(path, env={}).storage
    assert (storage.retries, storage.retry_delay, storage.max_pending) == (5, 0.25, 2000)
    assert storage.spill_dir == tmp_path / "etc" / "st"  # relative to the config file
    defaults = parse("", {"K382_STORAGE_RETRIES": "0", "K382_STORAGE_SPILL_DIR": "/var/k"}).storage
    assert (defaults.retries, defaults.retry_delay, defaults.max_pending) == (0, 1.0, 100_000)
    assert defaults.spill_dir == Path("/var/k")


def test_a_meter_may_name_its_identity_for_home_assistant() -> None:
    config = parse(METER.rstrip("\n") + "\nunique_id = 'house-main'\n")
    assert config.meters[0].unique_id == "house-main"
    assert parse(METER).meters[0].unique_id is None


def test_the_dashboards_public_url() -> None:
    assert parse("[http]\npublic_url = 'https://k382.example/'\n").http.dashboard_url() == (
        "https://k382.example/"
    )
    assert parse("[http]\nlisten = '[::1]:8382'\n").http.dashboard_url() is None
    assert parse("[http]\nlisten = 'k382.lan:80'\n").http.dashboard_url() == "http://k382.lan:80"
    assert parse("").http.dashboard_url() is None

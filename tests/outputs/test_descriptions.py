"""The outputs' descriptions name the registers of the protocol's tables, and only those."""

from __future__ import annotations

from kamstrup382.outputs.descriptions import (
    HOME_ASSISTANT,
    HOME_ASSISTANT_KMP,
    PROMETHEUS,
    PROMETHEUS_KMP,
)
from kamstrup382.protocol import REGISTERS
from kamstrup382.protocol.kmp import KMP_382_REGISTERS
from kamstrup382.protocol.registers import RegisterKind


def test_every_register_has_a_home_assistant_description() -> None:
    assert list(HOME_ASSISTANT) == [r.name for r in REGISTERS]


def test_prometheus_exports_every_numeric_register_under_the_package_prefix() -> None:
    numeric = [r.name for r in REGISTERS if r.kind is not RegisterKind.TEXT]
    assert list(PROMETHEUS) == numeric
    assert all(metric.name.startswith("kamstrup382_") for metric in PROMETHEUS.values())
    assert all(metric.help for metric in PROMETHEUS.values())


def test_every_kmp_register_is_described_for_both() -> None:
    names = {r.name for r in KMP_382_REGISTERS}
    assert set(HOME_ASSISTANT_KMP) == names
    assert set(PROMETHEUS_KMP) == names
    assert all(metric.name.startswith("kamstrup382_") for metric in PROMETHEUS_KMP.values())
    # a counter is a counter register's, a gauge a gauge register's
    for register in KMP_382_REGISTERS:
        counter = PROMETHEUS_KMP[register.name].name.endswith("_total")
        assert counter == (register.kind is RegisterKind.COUNTER), register.name


def test_registers_sharing_a_metric_share_its_labels_and_differ_in_them() -> None:
    families: dict[str, set[tuple[str, str] | None]] = {}
    for metric in [*PROMETHEUS.values(), *PROMETHEUS_KMP.values()]:
        families.setdefault(metric.name, set()).add(metric.label)
    for name, labels in families.items():
        assert len({None if label is None else label[0] for label in labels}) == 1, name
    members = [
        (m.name, m.label)
        for table in (PROMETHEUS, PROMETHEUS_KMP)
        for key, m in table.items()
        if not (table is PROMETHEUS_KMP and key == "energy")  # the one family both share
    ]
    assert len(members) == len(set(members))  # no two registers on one series
    assert families["kamstrup382_power_watts"] == {
        ("phase", "total"),
        ("phase", "l1"),
        ("phase", "l2"),
        ("phase", "l3"),
    }

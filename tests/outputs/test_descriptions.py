"""The outputs' descriptions name the registers of the protocol's table, and only those."""

from __future__ import annotations

from kamstrup382.outputs.descriptions import HOME_ASSISTANT, PROMETHEUS
from kamstrup382.protocol import REGISTERS
from kamstrup382.protocol.registers import RegisterKind


def test_every_register_has_a_home_assistant_description() -> None:
    assert list(HOME_ASSISTANT) == [r.name for r in REGISTERS]


def test_prometheus_exports_every_numeric_register_under_the_package_prefix() -> None:
    numeric = [r.name for r in REGISTERS if r.kind is not RegisterKind.TEXT]
    assert list(PROMETHEUS) == numeric
    assert all(metric.name.startswith("kamstrup382_") for metric in PROMETHEUS.values())
    assert all(metric.help for metric in PROMETHEUS.values())

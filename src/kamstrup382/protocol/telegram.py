"""A decoded reply, and the values of the eight registers of a Kamstrup 382."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from decimal import Decimal
from functools import cached_property
from typing import Any

from kamstrup382.errors import UsageError
from kamstrup382.protocol.bcc import BccAlgorithm
from kamstrup382.protocol.dataset import DataSet, parse_data_block
from kamstrup382.protocol.identification import Identification
from kamstrup382.protocol.registers import REGISTER_BY_NAME, RegisterKind

__all__ = ["MeterValues", "Telegram"]


@dataclass(frozen=True, slots=True)
class MeterValues:
    """The eight registers of a Kamstrup 382, by name, as exact values.

    ``customer_number`` is text (8 digits, leading zeros kept); the others are ``Decimal``
    (an ``int`` given is converted). Each value must fit the register as the meter prints it.
    """

    customer_number: str = "00000000"
    energy: Decimal = Decimal(0)
    tariff_1: Decimal = Decimal(0)
    tariff_2: Decimal = Decimal(0)
    hour_counter: Decimal = Decimal(0)
    pulse_input: Decimal = Decimal(0)
    actual_peak: Decimal = Decimal("0.0")
    last_month_peak: Decimal = Decimal("0.0")

    def __post_init__(self) -> None:
        for f in fields(self):
            reg = REGISTER_BY_NAME[f.name]
            value = getattr(self, f.name)
            if reg.kind is RegisterKind.TEXT:
                if not (isinstance(value, str) and value.isdigit() and len(value) == reg.digits):
                    raise UsageError(f"{f.name} must be {reg.digits} digits, got {value!r}")
                continue
            if isinstance(value, int) and not isinstance(value, bool):
                value = Decimal(value)
                object.__setattr__(self, f.name, value)
            if not isinstance(value, Decimal) or not value.is_finite():
                raise UsageError(f"{f.name} must be a Decimal, got {value!r}")
            if value < 0 or value >= reg.wraps_at:
                raise UsageError(
                    f"{f.name}={value} outside the register's range 0..{reg.wraps_at - 1}"
                )
            if value != value.quantize(Decimal(1).scaleb(-reg.decimals)):
                raise UsageError(f"{f.name}={value} has more than {reg.decimals} decimals")

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Telegram:
    """A complete, checked reply.

    ``raw`` is the reply in 7-bit form, from the ``/`` of the identification to the BCC;
    ``data_block`` the text between STX and ETX. Everything was validated when the telegram
    was decoded (BCC, grammar of every line, identification); the data sets are built from
    the block the first time they are asked for.
    """

    identification: Identification
    data_block: str
    bcc_algorithm: BccAlgorithm
    bcc: int
    raw: bytes = field(repr=False)
    block_offset: int = field(default=0, repr=False, compare=False)

    @cached_property
    def data_sets(self) -> tuple[DataSet, ...]:
        return parse_data_block(self.data_block, self.block_offset)

    def get(self, name_or_code: str) -> DataSet | None:
        """The data set for a register name (``energy``) or code as printed (``1.20``)."""
        reg = REGISTER_BY_NAME.get(name_or_code)
        code = reg.code if reg else name_or_code
        for ds in self.data_sets:
            if ds.address == code:
                return ds
        return None

    @cached_property
    def registers(self) -> dict[str, Decimal | str]:
        """Values of the known (named) registers present, by name."""
        return {ds.name: ds.value for ds in self.data_sets if ds.name is not None}

    def meter_values(self) -> MeterValues:
        """The eight registers of a Kamstrup 382; :class:`UsageError` if one is missing."""
        regs = self.registers
        missing = [name for name in REGISTER_BY_NAME if name not in regs]
        if missing:
            raise UsageError(f"telegram lacks registers {', '.join(missing)}")
        return MeterValues(**regs)  # type: ignore[arg-type]

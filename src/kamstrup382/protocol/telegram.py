"""A decoded reply, and the values of the eight registers of a Kamstrup 382."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any

from kamstrup382.errors import UsageError
from kamstrup382.protocol.bcc import BccAlgorithm, BccCheck
from kamstrup382.protocol.dataset import (
    DataSet,
    Pieces,
    block_data_sets,
    block_registers,
    split_data_block,
)
from kamstrup382.protocol.identification import Identification
from kamstrup382.protocol.registers import REGISTER_BY_NAME, REGISTERS, RegisterKind

__all__ = ["MeterValues", "Telegram"]

#: Per numeric register, in field order: its name, the value it wraps at, the smallest exponent
#: it prints (minus its decimals) and that quantum. The text registers: name and digits.
_NUMERIC_CHECKS = tuple(
    (r.name, r.wraps_at, -r.decimals, Decimal(1).scaleb(-r.decimals))
    for r in REGISTERS
    if r.kind is not RegisterKind.TEXT
)
_TEXT_CHECKS = tuple((r.name, r.digits) for r in REGISTERS if r.kind is RegisterKind.TEXT)


@dataclass(slots=True, unsafe_hash=True)
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
        for name, digits in _TEXT_CHECKS:
            text = getattr(self, name)
            if not (isinstance(text, str) and text.isdigit() and len(text) == digits):
                raise UsageError(f"{name} must be {digits} digits, got {text!r}")
        for name, wraps_at, exponent, quantum in _NUMERIC_CHECKS:
            value = getattr(self, name)
            if type(value) is not Decimal:
                if isinstance(value, int) and not isinstance(value, bool):
                    value = Decimal(value)
                    setattr(self, name, value)
                elif not isinstance(value, Decimal):
                    raise UsageError(f"{name} must be a Decimal, got {value!r}")
            if not value.is_finite():
                raise UsageError(f"{name} must be a Decimal, got {value!r}")
            if value < 0 or value >= wraps_at:
                raise UsageError(f"{name}={value} outside the register's range 0..{wraps_at - 1}")
            # more digits than the register prints are fine only as trailing zeros (``1.50``
            # for one decimal is the same value)
            if value != value.quantize(quantum):
                raise UsageError(f"{name}={value} has more than {-exponent} decimals")

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _METER_VALUE_NAMES}


#: The registers of :class:`MeterValues`, in field order.
_METER_VALUE_NAMES = tuple(f.name for f in fields(MeterValues))


@dataclass(slots=True, unsafe_hash=True)
class Telegram:
    """A complete, checked reply.

    ``raw`` is the reply in 7-bit form, from the ``/`` of the identification to the BCC;
    ``data_block`` the text between STX and ETX; ``block_offset`` the stream position of the
    block's first character; ``bcc_check`` what the decoder computed over the block (which
    algorithms match the BCC received). The decoder checks the BCC and the identification;
    the telegram checks its block's grammar as it is built (:class:`FramingError` naming the
    place): one regular expression cuts the block at its groups, and the telegram keeps the
    pieces. The register values and the data sets are read from them on each use.
    """

    identification: Identification
    data_block: str
    bcc_algorithm: BccAlgorithm
    bcc: int
    raw: bytes = field(repr=False)
    block_offset: int = field(default=0, repr=False, compare=False)
    bcc_check: BccCheck | None = field(default=None, repr=False, compare=False)
    _pieces: Pieces = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._pieces = split_data_block(self.data_block, self.block_offset)  # checks the grammar

    @property
    def data_sets(self) -> tuple[DataSet, ...]:
        """Every data set of the block, in order."""
        return block_data_sets(self._pieces)

    def get(self, name_or_code: str) -> DataSet | None:
        """The data set for a register name (``energy``) or code as printed (``1.20``)."""
        reg = REGISTER_BY_NAME.get(name_or_code)
        code = reg.code if reg else name_or_code
        for ds in self.data_sets:
            if ds.address == code:
                return ds
        return None

    @property
    def registers(self) -> dict[str, Decimal | str]:
        """Values of the known (named) registers present, by name.

        ``Decimal`` for numeric registers; text for the customer number and for a value that
        is not a number (an empty one, say). A new dictionary on each call.
        """
        return block_registers(self._pieces)

    def meter_values(self) -> MeterValues:
        """The eight registers of a Kamstrup 382; :class:`UsageError` if one is missing."""
        regs = self.registers
        missing = [name for name in REGISTER_BY_NAME if name not in regs]
        if missing:
            raise UsageError(f"telegram lacks registers {', '.join(missing)}")
        return MeterValues(**regs)  # type: ignore[arg-type]

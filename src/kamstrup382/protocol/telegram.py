"""A decoded reply, and the values of a Kamstrup 382's registers (any dialect)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any

from kamstrup382.errors import UsageError
from kamstrup382.protocol.bcc import BccAlgorithm, BccCheck
from kamstrup382.protocol.dataset import (
    DataSet,
    Pieces,
    block_data_sets,
    block_groups,
    block_registers,
    split_data_block,
)
from kamstrup382.protocol.dialects import DIALECTS, Dialect, dialect_of
from kamstrup382.protocol.identification import Identification
from kamstrup382.protocol.registers import REGISTERS, VALUE_LIMITS, RegisterKind

__all__ = ["MeterValues", "Telegram"]

#: Per numeric register, in field order: its name, the value it wraps at, the smallest exponent
#: it prints (minus its decimals) and that quantum, in the widest dialect. The text registers:
#: name and digits.
_NUMERIC_CHECKS = tuple(
    (name, limit.wraps_at, -limit.decimals, Decimal(1).scaleb(-limit.decimals))
    for name, limit in VALUE_LIMITS.items()
)
_TEXT_CHECKS = tuple((r.name, r.digits) for r in REGISTERS if r.kind is RegisterKind.TEXT)
#: The registers some dialect does not print: ``None`` in its values.
_OPTIONAL = frozenset(r.name for r in REGISTERS if any(r.name not in d.names for d in DIALECTS))


@dataclass(slots=True, unsafe_hash=True)
class MeterValues:
    """The registers of a Kamstrup 382, by name, as exact values, in any dialect.

    ``customer_number`` is text (8 digits, leading zeros kept); the others are ``Decimal``
    (an ``int`` given is converted). Each value must fit the register as some dialect prints
    it (the 382C's actual peak has 3 decimals). A register the meter does not have is
    ``None``: ``tariff_3`` and ``tariff_4`` on the 685-382 (the defaults), ``last_month_peak``
    on the 382C.
    """

    customer_number: str = "00000000"
    energy: Decimal = Decimal(0)
    tariff_1: Decimal = Decimal(0)
    tariff_2: Decimal = Decimal(0)
    tariff_3: Decimal | None = None
    tariff_4: Decimal | None = None
    hour_counter: Decimal = Decimal(0)
    pulse_input: Decimal = Decimal(0)
    actual_peak: Decimal = Decimal("0.0")
    last_month_peak: Decimal | None = Decimal("0.0")

    def __post_init__(self) -> None:
        for name, digits in _TEXT_CHECKS:
            text = getattr(self, name)
            if not (isinstance(text, str) and text.isdigit() and len(text) == digits):
                raise UsageError(f"{name} must be {digits} digits, got {text!r}")
        for name, wraps_at, exponent, quantum in _NUMERIC_CHECKS:
            value = getattr(self, name)
            if value is None and name in _OPTIONAL:
                continue
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
        """Every register by name, ``None`` for one the meter does not have."""
        return {name: getattr(self, name) for name in _METER_VALUE_NAMES}

    def present(self) -> dict[str, Any]:
        """The registers the meter sent, by name (those that are not ``None``)."""
        return {name: value for name, value in self.as_dict().items() if value is not None}


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
    pieces. The register values and the data sets are read from them on each use. Codes are
    named by the meter's :attr:`dialect`, chosen from its identification.
    """

    identification: Identification
    data_block: str
    bcc_algorithm: BccAlgorithm
    bcc: int
    raw: bytes = field(repr=False)
    block_offset: int = field(default=0, repr=False, compare=False)
    bcc_check: BccCheck | None = field(default=None, repr=False, compare=False)
    _pieces: Pieces = field(init=False, repr=False, compare=False)
    _dialect: Dialect = field(init=False, repr=False, compare=False)
    #: the registers' values, read from the pieces at their first use (this telegram's own)
    _registers: dict[str, Decimal | str] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self._dialect = dialect_of(self.identification)
        self._pieces = split_data_block(self.data_block, self.block_offset)  # checks the grammar

    @property
    def dialect(self) -> Dialect:
        """The meter's dialect, from its identification (:func:`~.dialects.dialect_of`)."""
        return self._dialect

    @property
    def data_sets(self) -> tuple[DataSet, ...]:
        """Every data set of the block, in order, named by the meter's dialect."""
        return block_data_sets(self._pieces, self._dialect.by_code)

    def get(self, name_or_code: str) -> DataSet | None:
        """The data set for a register name (``energy``) or code as printed (``1.20``)."""
        code = (
            self._dialect.register(name_or_code).code
            if name_or_code in self._dialect.names
            else name_or_code
        )
        for ds in self.data_sets:
            if ds.address == code:
                return ds
        return None

    @property
    def groups(self) -> list[tuple[str, str, str | None]]:
        """Each data set's first group, as printed, in order: address, value text and unit
        (``None``: none printed); a further group of a data set is left out."""
        return block_groups(self._pieces)

    @property
    def registers(self) -> dict[str, Decimal | str]:
        """Values of the known (named) registers present, by name.

        ``Decimal`` for numeric registers; text for the customer number and for a value that
        is not a number (an empty one, say). A new dictionary on each call.
        """
        values = self._registers
        return (
            block_registers(self._pieces, self._dialect.by_code) if values is None else dict(values)
        )

    def register_values(self) -> Mapping[str, Decimal | str]:
        """:attr:`registers`, read once and kept by this telegram, read-only (the plausibility
        checks and :meth:`meter_values` share it)."""
        values = self._registers
        if values is None:
            values = self._registers = block_registers(self._pieces, self._dialect.by_code)
        return values

    def meter_values(self) -> MeterValues:
        """The registers of the meter's dialect (``None`` for the others); :class:`UsageError`
        if one of its registers is missing."""
        regs = self.register_values()
        missing = [r.name for r in self._dialect.registers if r.name not in regs]
        if missing:
            raise UsageError(f"telegram lacks registers {', '.join(missing)}")
        absent = {name: None for name in _OPTIONAL if name not in regs}
        return MeterValues(**regs, **absent)  # type: ignore[arg-type]

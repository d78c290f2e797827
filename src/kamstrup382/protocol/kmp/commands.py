"""KMP commands and their messages: GetType, GetSerialNo, GetRegister, both directions.

::

    GetType      0x01  request: -                   reply: meter type (2) software revision (2)
    GetSerialNo  0x02  request: -                   reply: serial number (4, big-endian)
    GetRegister  0x10  request: count (1) id (2)*   reply: per register: id (2) unit (1)
                                                       length (1) sign/exponent (1) mantissa

A GetRegister request asks for 1 to :data:`MAX_REGISTERS` registers; the reply holds those the
meter knows, in the order asked. :func:`decode_message` turns a checked :class:`Frame` into a
message; each message's :meth:`frame` gives the frame that carries it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar

from kamstrup382.errors import FramingError, UnknownCommandError, UsageError
from kamstrup382.protocol.kmp.frame import METER_ADDRESS, Direction, Frame
from kamstrup382.protocol.kmp.registers import register_name
from kamstrup382.protocol.kmp.units import unit_name
from kamstrup382.protocol.kmp.values import decode_value, encode_value

__all__ = [
    "MAX_REGISTERS",
    "Command",
    "GetRegisterRequest",
    "GetSerialNoRequest",
    "GetTypeRequest",
    "Message",
    "RegisterReply",
    "RegisterValue",
    "SerialNoReply",
    "TypeReply",
    "decode_message",
]

#: The most registers one GetRegister request may ask for.
MAX_REGISTERS = 8


class Command(enum.IntEnum):
    GET_TYPE = 0x01
    GET_SERIAL_NO = 0x02
    GET_REGISTER = 0x10


def _frame(direction: Direction, cid: int, data: bytes, address: int) -> Frame:
    return Frame(direction, address, cid, data)


def _no_data(name: str, data: bytes) -> None:
    if data:
        raise FramingError(f"KMP {name} request carries {len(data)} data bytes, expected none")


def _exact(name: str, data: bytes, size: int) -> None:
    if len(data) != size:
        raise FramingError(f"KMP {name} reply of {len(data)} data bytes, expected {size}")


@dataclass(frozen=True, slots=True)
class GetTypeRequest:
    command: ClassVar[Command] = Command.GET_TYPE

    def frame(self, address: int = METER_ADDRESS) -> Frame:
        return _frame(Direction.REQUEST, self.command, b"", address)

    @classmethod
    def parse(cls, data: bytes) -> GetTypeRequest:
        _no_data("GetType", data)
        return cls()


@dataclass(frozen=True, slots=True)
class TypeReply:
    """``meter_type`` (16 bits) and ``software_revision`` (a letter index 1-26, a number)."""

    command: ClassVar[Command] = Command.GET_TYPE
    meter_type: int
    software_revision: int

    def __post_init__(self) -> None:
        for what, value in (("meter type", self.meter_type), ("revision", self.software_revision)):
            if not 0 <= value <= 0xFFFF:
                raise UsageError(f"KMP {what} {value} is not 16 bits")

    @property
    def revision_text(self) -> str:
        """``F1`` for ``0x0601``; the hex digits when the first byte is no letter."""
        letter, number = divmod(self.software_revision, 256)
        return (
            f"{chr(64 + letter)}{number}" if 1 <= letter <= 26 else f"{self.software_revision:04x}"
        )

    def frame(self, address: int = METER_ADDRESS) -> Frame:
        data = self.meter_type.to_bytes(2, "big") + self.software_revision.to_bytes(2, "big")
        return _frame(Direction.REPLY, self.command, data, address)

    @classmethod
    def parse(cls, data: bytes) -> TypeReply:
        _exact("GetType", data, 4)
        return cls(int.from_bytes(data[:2], "big"), int.from_bytes(data[2:], "big"))


@dataclass(frozen=True, slots=True)
class GetSerialNoRequest:
    command: ClassVar[Command] = Command.GET_SERIAL_NO

    def frame(self, address: int = METER_ADDRESS) -> Frame:
        return _frame(Direction.REQUEST, self.command, b"", address)

    @classmethod
    def parse(cls, data: bytes) -> GetSerialNoRequest:
        _no_data("GetSerialNo", data)
        return cls()


@dataclass(frozen=True, slots=True)
class SerialNoReply:
    command: ClassVar[Command] = Command.GET_SERIAL_NO
    serial: int

    def __post_init__(self) -> None:
        if not 0 <= self.serial <= 0xFFFFFFFF:
            raise UsageError(f"KMP serial number {self.serial} is not 32 bits")

    def frame(self, address: int = METER_ADDRESS) -> Frame:
        return _frame(Direction.REPLY, self.command, self.serial.to_bytes(4, "big"), address)

    @classmethod
    def parse(cls, data: bytes) -> SerialNoReply:
        _exact("GetSerialNo", data, 4)
        return cls(int.from_bytes(data, "big"))


@dataclass(frozen=True, slots=True)
class GetRegisterRequest:
    command: ClassVar[Command] = Command.GET_REGISTER
    ids: tuple[int, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.ids) <= MAX_REGISTERS:
            raise UsageError(
                f"a KMP GetRegister request asks for 1 to {MAX_REGISTERS} registers, "
                f"not {len(self.ids)}"
            )
        for register in self.ids:
            if not 0 <= register <= 0xFFFF:
                raise UsageError(f"KMP register id {register} is not 16 bits")

    def frame(self, address: int = METER_ADDRESS) -> Frame:
        data = bytes((len(self.ids),)) + b"".join(r.to_bytes(2, "big") for r in self.ids)
        return _frame(Direction.REQUEST, self.command, data, address)

    @classmethod
    def parse(cls, data: bytes) -> GetRegisterRequest:
        if not data:
            raise FramingError("KMP GetRegister request without its count byte")
        count = data[0]
        if not 1 <= count <= MAX_REGISTERS or len(data) != 1 + 2 * count:
            raise FramingError(
                f"KMP GetRegister request: count {count} with {len(data) - 1} id bytes "
                f"(1 to {MAX_REGISTERS} registers, 2 bytes each)"
            )
        return cls(tuple(int.from_bytes(data[i : i + 2], "big") for i in range(1, len(data), 2)))


@dataclass(frozen=True, slots=True)
class RegisterValue:
    """One register of a GetRegister reply; ``length`` is the mantissa's size in bytes."""

    id: int
    unit_code: int
    value: Decimal
    length: int

    @property
    def name(self) -> str | None:
        return register_name(self.id)

    @property
    def unit(self) -> str:
        return unit_name(self.unit_code)

    @classmethod
    def of(
        cls, register_id: int, unit_code: int, value: Decimal, length: int | None = None
    ) -> RegisterValue:
        """A register holding ``value``, its mantissa ``length`` bytes (shortest if ``None``)."""
        _, mantissa = encode_value(value, length)
        return cls(register_id, unit_code, value, len(mantissa))

    def encode(self) -> bytes:
        sign_exponent, mantissa = encode_value(self.value, self.length)
        return (
            self.id.to_bytes(2, "big")
            + bytes((self.unit_code, len(mantissa), sign_exponent))
            + mantissa
        )


@dataclass(frozen=True, slots=True)
class RegisterReply:
    command: ClassVar[Command] = Command.GET_REGISTER
    registers: tuple[RegisterValue, ...]

    def frame(self, address: int = METER_ADDRESS) -> Frame:
        data = b"".join(r.encode() for r in self.registers)
        return _frame(Direction.REPLY, self.command, data, address)

    @classmethod
    def parse(cls, data: bytes) -> RegisterReply:
        registers = []
        at = 0
        while at < len(data):
            if len(data) - at < 5:
                raise FramingError(
                    f"KMP GetRegister reply: register at data byte {at} has "
                    f"{len(data) - at} of its 5 header bytes"
                )
            register_id = int.from_bytes(data[at : at + 2], "big")
            unit_code, length, sign_exponent = data[at + 2], data[at + 3], data[at + 4]
            end = at + 5 + length
            if length == 0 or end > len(data):
                raise FramingError(
                    f"KMP GetRegister reply: register 0x{register_id:04x} at data byte {at} "
                    f"announces a {length}-byte mantissa, {len(data) - at - 5} bytes follow"
                )
            value = decode_value(sign_exponent, data[at + 5 : end])
            registers.append(RegisterValue(register_id, unit_code, value, length))
            at = end
        return cls(tuple(registers))

    def by_id(self) -> dict[int, RegisterValue]:
        return {r.id: r for r in self.registers}


Message = (
    GetTypeRequest
    | TypeReply
    | GetSerialNoRequest
    | SerialNoReply
    | GetRegisterRequest
    | RegisterReply
)

_PARSERS: dict[tuple[Direction, int], Callable[[bytes], Message]] = {
    (Direction.REQUEST, Command.GET_TYPE): GetTypeRequest.parse,
    (Direction.REPLY, Command.GET_TYPE): TypeReply.parse,
    (Direction.REQUEST, Command.GET_SERIAL_NO): GetSerialNoRequest.parse,
    (Direction.REPLY, Command.GET_SERIAL_NO): SerialNoReply.parse,
    (Direction.REQUEST, Command.GET_REGISTER): GetRegisterRequest.parse,
    (Direction.REPLY, Command.GET_REGISTER): RegisterReply.parse,
}


def decode_message(frame: Frame) -> Message:
    """The message a checked frame carries; :class:`UnknownCommandError` for another cid,
    :class:`FramingError` for data that does not fit the command."""
    parse = _PARSERS.get((frame.direction, frame.cid))
    if parse is None:
        raise UnknownCommandError(
            f"KMP command id 0x{frame.cid:02x} in a {frame.direction.value} is not one of "
            + ", ".join(f"0x{c.value:02x} {c.name}" for c in Command),
            cid=frame.cid,
        )
    return parse(frame.data)

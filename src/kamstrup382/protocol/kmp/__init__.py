"""The Kamstrup Meter Protocol (KMP), sans-IO: frames, stuffing, CRC, commands, values.

The binary request/response protocol of the Kamstrup 382J, 382Jx3, 382Lx7 and 382M on the
optical port (9600 baud 8N1) and of the MULTICAL heat meters (1200 baud 8N2). No sockets, no
serial ports, no clock: like the mode A core beside it, bytes in, frames and messages out.
"""

from kamstrup382.protocol.kmp.commands import (
    MAX_REGISTERS,
    Command,
    GetRegisterRequest,
    GetSerialNoRequest,
    GetTypeRequest,
    Message,
    RegisterReply,
    RegisterValue,
    SerialNoReply,
    TypeReply,
    decode_message,
)
from kamstrup382.protocol.kmp.decoder import (
    ACK_RECEIVED,
    MAX_FRAME,
    Ack,
    FrameDecoder,
    decode_capture,
    decode_frames,
)
from kamstrup382.protocol.kmp.frame import (
    ACK,
    METER_ADDRESS,
    RESERVED,
    START_FROM_METER,
    START_TO_METER,
    STOP,
    Direction,
    Frame,
    crc16,
    destuff,
    encode_frame,
    parse_frame,
    stuff,
)
from kamstrup382.protocol.kmp.registers import (
    KMP_382_REGISTERS,
    KMP_REGISTER_BY_ID,
    KMP_REGISTER_BY_NAME,
    KmpRegister,
    register_name,
)
from kamstrup382.protocol.kmp.units import UNITS, convert, unit_name
from kamstrup382.protocol.kmp.values import decode_value, encode_value

__all__ = [
    "ACK",
    "ACK_RECEIVED",
    "KMP_382_REGISTERS",
    "KMP_REGISTER_BY_ID",
    "KMP_REGISTER_BY_NAME",
    "MAX_FRAME",
    "MAX_REGISTERS",
    "METER_ADDRESS",
    "RESERVED",
    "START_FROM_METER",
    "START_TO_METER",
    "STOP",
    "UNITS",
    "Ack",
    "Command",
    "Direction",
    "Frame",
    "FrameDecoder",
    "GetRegisterRequest",
    "GetSerialNoRequest",
    "GetTypeRequest",
    "KmpRegister",
    "Message",
    "RegisterReply",
    "RegisterValue",
    "SerialNoReply",
    "TypeReply",
    "convert",
    "crc16",
    "decode_capture",
    "decode_frames",
    "decode_message",
    "decode_value",
    "destuff",
    "encode_frame",
    "encode_message",
    "encode_value",
    "parse_frame",
    "register_name",
    "stuff",
    "unit_name",
]


def encode_message(message: Message, address: int = METER_ADDRESS) -> bytes:
    """The message on the wire, in its frame."""
    return encode_frame(message.frame(address))

"""The sans-IO protocol core: IEC 62056-21 mode A as a Kamstrup 382 speaks it.

No sockets, no serial ports, no clock: bytes in, events and telegrams out; values in, bytes out.
"""

from kamstrup382.protocol.bcc import (
    BccAlgorithm,
    BccCheck,
    BccMode,
    bcc_sum7,
    bcc_xor,
    check_bcc,
    compute_bcc,
    match_bcc,
)
from kamstrup382.protocol.dataset import DataSet, DataValue, parse_data_line
from kamstrup382.protocol.decoder import (
    DecoderState,
    Event,
    IdentificationReceived,
    TelegramDecoder,
    TelegramReceived,
    decode_reply,
)
from kamstrup382.protocol.dialects import (
    DIALECTS,
    KAMSTRUP_382,
    KAMSTRUP_382C,
    Dialect,
    dialect_named,
    dialect_of,
    dialect_of_stored,
)
from kamstrup382.protocol.encoder import (
    EndMarker,
    encode_data_block,
    encode_identification,
    encode_reply,
    format_register,
    meter_data_sets,
)
from kamstrup382.protocol.frame import ETX, REQUEST, STX
from kamstrup382.protocol.identification import (
    Identification,
    TypeNumber,
    parse_identification,
    parse_type_number,
)
from kamstrup382.protocol.parity import add_parity, first_parity_error, strip_parity
from kamstrup382.protocol.plausibility import Observation, check_history, check_telegram
from kamstrup382.protocol.registers import (
    KAMSTRUP_382C_REGISTERS,
    KAMSTRUP_685_382_REGISTERS,
    REGISTER_BY_CODE,
    REGISTER_BY_NAME,
    REGISTERS,
    Register,
)
from kamstrup382.protocol.telegram import MeterValues, Telegram

__all__ = [
    "DIALECTS",
    "ETX",
    "KAMSTRUP_382",
    "KAMSTRUP_382C",
    "KAMSTRUP_382C_REGISTERS",
    "KAMSTRUP_685_382_REGISTERS",
    "REGISTERS",
    "REGISTER_BY_CODE",
    "REGISTER_BY_NAME",
    "REQUEST",
    "STX",
    "BccAlgorithm",
    "BccCheck",
    "BccMode",
    "DataSet",
    "DataValue",
    "DecoderState",
    "Dialect",
    "EndMarker",
    "Event",
    "Identification",
    "IdentificationReceived",
    "MeterValues",
    "Observation",
    "Register",
    "Telegram",
    "TelegramDecoder",
    "TelegramReceived",
    "TypeNumber",
    "add_parity",
    "bcc_sum7",
    "bcc_xor",
    "check_bcc",
    "check_history",
    "check_telegram",
    "compute_bcc",
    "decode_reply",
    "dialect_named",
    "dialect_of",
    "dialect_of_stored",
    "encode_data_block",
    "encode_identification",
    "encode_reply",
    "first_parity_error",
    "format_register",
    "match_bcc",
    "meter_data_sets",
    "parse_data_line",
    "parse_identification",
    "parse_type_number",
    "strip_parity",
]

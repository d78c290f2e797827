"""kamstrup382: read Kamstrup 382 electricity meters over IEC 61107 / IEC 62056-21 mode A."""

from kamstrup382.errors import (
    BccError,
    ConfigError,
    ConnectionLost,
    FramingError,
    IdentificationError,
    Kamstrup382Error,
    LineError,
    ParityError,
    ProtocolError,
    ReadTimeout,
    StorageError,
    TypeNumberError,
    UsageError,
)
from kamstrup382.protocol import (
    REQUEST,
    BccAlgorithm,
    BccMode,
    Identification,
    MeterValues,
    Telegram,
    TelegramDecoder,
    TypeNumber,
    decode_reply,
    encode_reply,
)

__version__ = "0.1.0"

__all__ = [
    "REQUEST",
    "BccAlgorithm",
    "BccError",
    "BccMode",
    "ConfigError",
    "ConnectionLost",
    "FramingError",
    "Identification",
    "IdentificationError",
    "Kamstrup382Error",
    "LineError",
    "MeterValues",
    "ParityError",
    "ProtocolError",
    "ReadTimeout",
    "StorageError",
    "Telegram",
    "TelegramDecoder",
    "TypeNumber",
    "TypeNumberError",
    "UsageError",
    "__version__",
    "decode_reply",
    "encode_reply",
]

"""The spill journal: results the storage refused, kept in a file until it takes them.

When the storage keeps failing (a read-only or full database, a PostgreSQL server away), the
collector does not drop what it read: at shutdown, at the end of ``collect --once``, or when
more results wait than ``storage.max_pending``, the batches the storage refused are appended
here, and :meth:`SpillJournal.replay` stores them at the next start (or as soon as the storage
takes a batch again). Writes are idempotent by (meter, slot) for readings and by (meter, slot,
failed_at) for failures, so a result stored twice is kept once.

The file: JSON Lines, one result per line, ``{"v": 1, "type": "reading" | "kmp_reading" |
"failure", ...}`` with the record's fields by name: times as ISO 8601 with their offset,
register values as their exact decimal text (a KMP reading's ``values``: an object of the
registers it has, by name), bytes as hex, durations as JSON numbers (Python's shortest repr,
read back exactly). Every append is written whole and fsynced before it counts as spilled; a
new file is created owner-only (0600, its directory 0700) and its directory fsynced. A torn
last line (the process killed while appending) is skipped with a warning; any other line that
cannot be read is kept aside in ``<journal>.rejected`` with a warning. The journal is emptied
only after every result in it was committed. Appends and replays take an exclusive ``flock``
on the file, so collectors sharing a state directory do not interleave.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import typing
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from kamstrup382.errors import Kamstrup382Error, StorageError
from kamstrup382.protocol import MeterValues
from kamstrup382.storage import (
    AnyReading,
    FailureRecord,
    KmpReadingRecord,
    ReadingRecord,
    Storage,
)
from kamstrup382.storage.files import fsync_dir, make_private_dir

__all__ = ["FORMAT_VERSION", "SpillJournal", "decode_line", "encode_record"]

log = logging.getLogger(__name__)

#: The ``"v"`` of every line written.
FORMAT_VERSION = 1
#: Results stored per transaction by :meth:`SpillJournal.replay`.
REPLAY_BATCH = 500
_TYPES: dict[str, type[ReadingRecord] | type[KmpReadingRecord] | type[FailureRecord]] = {
    "reading": ReadingRecord,
    "kmp_reading": KmpReadingRecord,
    "failure": FailureRecord,
}
_NAMES = {cls: name for name, cls in _TYPES.items()}
Record = ReadingRecord | KmpReadingRecord | FailureRecord
#: The type hint of a KMP reading's ``values``.
_KMP_VALUES = typing.get_type_hints(KmpReadingRecord)["values"]


def _encode(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, MeterValues):
        return {name: _encode(v) for name, v in value.as_dict().items()}
    if isinstance(value, Mapping):  # a KMP reading's registers
        return {str(name): _encode(v) for name, v in value.items()}
    return value


def encode_record(record: Record) -> str:
    """One journal line (without its newline)."""
    body: dict[str, object] = {"v": FORMAT_VERSION, "type": _NAMES[type(record)]}
    for field in dataclasses.fields(record):
        body[field.name] = _encode(getattr(record, field.name))
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True)


def _decode(value: object, hint: object) -> object:
    """``value`` read back as the type ``hint`` of its field."""
    if hint == _KMP_VALUES:
        if not isinstance(value, dict):
            raise ValueError("expected an object")
        return {_text(name): _exact(v) for name, v in value.items()}
    args = typing.get_args(hint)
    if value is None and type(None) in args:
        return None
    if args:  # ``X | None`` with a value: X
        hint = next(arg for arg in args if arg is not type(None))
    if hint is datetime:
        moment = datetime.fromisoformat(_text(value))
        if moment.tzinfo is None:
            raise ValueError(f"time without offset: {value!r}")
        return moment
    if hint is bytes:
        return bytes.fromhex(_text(value))
    if hint is MeterValues:
        if not isinstance(value, dict):
            raise ValueError("values: expected an object")
        registers: dict[str, Any] = {  # null: a register the meter does not have
            name: None
            if v is None
            else _text(v)
            if name == "customer_number"
            else Decimal(_text(v))
            for name, v in value.items()
        }
        return MeterValues(**registers)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    raise ValueError(f"unexpected value {value!r}")


def _exact(value: object) -> Decimal:
    number = Decimal(_text(value))
    if not number.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return number


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {value!r}")
    return value


def decode_line(line: str) -> Record:
    """A journal line read back; :class:`ValueError` (or ``TypeError``) when it is not one."""
    try:
        body = json.loads(line)
    except RecursionError:  # a corrupted line nested deeper than the parser goes
        raise ValueError("nested too deeply") from None
    if not isinstance(body, dict) or body.get("v") != FORMAT_VERSION:
        raise ValueError(f"not a version {FORMAT_VERSION} journal record")
    cls = _TYPES.get(str(body.get("type")))
    if cls is None:
        raise ValueError(f"unknown record type {body.get('type')!r}")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.name in body:
            try:
                values[field.name] = _decode(body[field.name], hints[field.name])
            except (ValueError, TypeError, InvalidOperation, Kamstrup382Error) as exc:
                raise ValueError(f"{field.name}: {exc}") from None
    return cls(**values)  # a field missing without a default: TypeError


class SpillJournal:
    """The journal file at ``path`` (see the module documentation)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"SpillJournal({str(self.path)!r})"

    # -- writing ------------------------------------------------------------------------------
    def append(self, readings: Sequence[AnyReading], failures: Sequence[FailureRecord]) -> int:
        """Append the results, fsynced; how many. :class:`StorageError` if it cannot."""
        records: list[Record] = [*readings, *failures]
        if not records:
            return 0
        data = "".join(encode_record(r) + "\n" for r in records).encode("ascii")
        try:
            with self._open(create=True) as fd:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":  # a torn line: end it first
                    data = b"\n" + data
                _write_all(fd, data)
                os.fsync(fd)
        except OSError as exc:
            raise StorageError(f"cannot write the spill journal {self.path}: {exc}") from exc
        return len(records)

    # -- reading ------------------------------------------------------------------------------
    def count(self) -> int:
        """Lines in the journal (0 when there is none)."""
        try:
            with self.path.open("rb") as handle:
                return sum(1 for line in handle if line.strip())
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise StorageError(f"cannot read the spill journal {self.path}: {exc}") from exc

    def replay(
        self,
        storage: Storage,
        *,
        outbox: Sequence[str] = (),
        batch_size: int = REPLAY_BATCH,
    ) -> int:
        """Store every result of the journal in ``storage``, then empty the journal; how many
        results it held (``outbox``: the outputs whose queues new readings go to, too).
        Nothing is removed unless all of them were committed (a failure of the storage raises
        :class:`StorageError` and leaves the journal as it was)."""
        try:
            with self._open(create=False) as fd:
                count = self._replay(fd, storage, outbox, batch_size)
                os.ftruncate(fd, 0)
                os.fsync(fd)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise StorageError(f"cannot read the spill journal {self.path}: {exc}") from exc
        with contextlib.suppress(OSError):  # an empty journal left behind is harmless
            self.path.unlink()
        return count

    def _replay(self, fd: int, storage: Storage, outbox: Sequence[str], batch_size: int) -> int:
        readings: list[AnyReading] = []
        failures: list[FailureRecord] = []
        count = 0
        rejected: list[bytes] = []
        handle = os.fdopen(os.dup(fd), "rb")
        with handle:
            for number, (line, torn) in enumerate(_lines(handle), start=1):
                try:
                    record = decode_line(line.decode("ascii"))
                except (ValueError, TypeError) as exc:  # UnicodeDecodeError is a ValueError
                    if torn:
                        log.warning(
                            "spill journal %s: skipped its torn last line %d (%d bytes, "
                            "written when the process stopped)",
                            self.path,
                            number,
                            len(line),
                        )
                    else:
                        log.warning(
                            "spill journal %s: line %d is not a record (%s); kept in %s",
                            self.path,
                            number,
                            exc,
                            self._rejected_path(),
                        )
                        rejected.append(line)
                    continue
                if isinstance(record, FailureRecord):
                    failures.append(record)
                else:
                    readings.append(record)
                count += 1
                if len(readings) + len(failures) >= batch_size:
                    storage.record(readings, failures, outbox=outbox)
                    readings, failures = [], []
        if readings or failures:
            storage.record(readings, failures, outbox=outbox)
        if rejected:
            self._reject(rejected)
        return count

    def _rejected_path(self) -> Path:
        return self.path.with_name(self.path.name + ".rejected")

    def _reject(self, lines: list[bytes]) -> None:
        path = self._rejected_path()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            _write_all(fd, b"".join(line + b"\n" for line in lines))
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- the file -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _open(self, *, create: bool) -> Iterator[int]:
        """The journal's file descriptor under an exclusive lock (created when ``create``).

        A journal emptied and removed by another process while this one waited for the lock is
        opened again (the descriptor would point at the removed file)."""
        flags = os.O_RDWR | os.O_APPEND
        for _ in range(8):
            created = False
            if create:
                make_private_dir(self.path.parent)
                try:
                    fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o600)
                    created = True
                except FileExistsError:
                    fd = os.open(self.path, flags)
            else:
                fd = os.open(self.path, flags)  # FileNotFoundError: no journal
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    same = os.path.samestat(os.fstat(fd), os.stat(self.path))
                except FileNotFoundError:
                    same = False
                if not same:
                    if not create:
                        raise FileNotFoundError(str(self.path))
                    continue
                if created:
                    fsync_dir(self.path.parent)
                yield fd
                return
            finally:
                os.close(fd)
        raise StorageError(f"the spill journal {self.path} keeps being replaced")


def _lines(handle: typing.BinaryIO) -> Iterator[tuple[bytes, bool]]:
    """Non-empty lines without their newline, and whether each is a torn last line."""
    for raw in handle:
        line = raw.rstrip(b"\r\n")
        if line.strip():
            yield line, not raw.endswith(b"\n")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]

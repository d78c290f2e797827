"""Fault injection for the emulated line: what can go wrong between a meter and its reader.

Each fault has a probability per request; the emulator draws them from a seeded
:class:`random.Random` per meter, so the same seed and the same sequence of requests give the
same faults, at the same places. Every fault names exactly the damage it does to the reply,
which is built clean first (the protocol core's encoder) and then damaged in this order:

- ``xor``: the block check character is the XOR of IEC 62056-21 instead of the Kamstrup sum
  (the meter acts as a standard IEC meter). Nothing else changes.
- ``bcc``: the block check character is wrong: neither the sum nor the XOR of the block.
- ``flip``: one data bit (bit 0-6) of one character of the data block (between STX and ETX,
  both excluded) is inverted. On 8-bit lines the character carries the even-parity bit of its
  new value: a double error that parity cannot see, which only the BCC catches.
- ``parity``: one character of the data block has a parity error. On 8-bit lines its parity
  bit (bit 7) is inverted and the data bits are intact. On 7-bit lines, where the parity bit
  is not delivered, the character arrives as NUL (0x00): what a tty checking parity (INPCK)
  without marking it (PARMRK) delivers for a character received with a parity error.
- ``shift``: one digit of one register's value is doubled and an equal digit is dropped from
  another register's value (``1.20.2(00000200*kWh)`` with ``1.31(000482*h)``). The block
  holds the same characters, so its sum, its XOR and every parity bit still match: a
  corruption no block check can see, only what the meter guarantees about its values.
- ``swap``: two adjacent different digits inside one register's value are exchanged
  (``1.20(0000035*kWh)`` for 53): the same characters again, invisible to the block check.
- ``double``: one character of the data block is sent twice.
- ``drop``: one character of the data block is not sent.
- ``truncate``: the reply stops after a random number of characters (at least one is sent and
  at least one is missing); the line stays open and silent.
- ``noise``: 1 to 16 random characters (never a ``/``) go out before the reply, at the answer
  time; the reply follows them without a pause.
- ``late``: the answer begins later than the specification's 600 ms (``late_delay`` seconds
  after the request, uniform in a range, 0.7-1.5 s by default).
- ``silent``: no answer to this request at all (the other faults drawn are then void).

Besides the probabilities, a script can name the faults of each meter's first requests, in
order (``Faults(script=(("silent",), ("bcc",), ()))``: no answer, then a wrong BCC, then a
clean reply); the probabilities decide for the requests after the script.

``Faults.parse("flip=0.1,late=0.05,xor=1")`` reads the command line form; ``str()`` writes it.
A script is written ``script=silent/bcc+late/none``: requests separated by ``/``, the kinds of
one request joined by ``+``, ``none`` for a clean reply.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from kamstrup382.errors import ConfigError
from kamstrup382.protocol import ETX, STX, add_parity, bcc_sum7, bcc_xor

__all__ = ["BLIND_KINDS", "FAULT_KINDS", "AppliedFault", "Damage", "Faults"]

#: Every fault kind, in the order the damage is applied (and logged).
FAULT_KINDS: tuple[str, ...] = (
    "xor",
    "bcc",
    "flip",
    "shift",
    "swap",
    "parity",
    "double",
    "drop",
    "truncate",
    "noise",
    "late",
    "silent",
)

#: The kinds that damage the values without the block check seeing it.
BLIND_KINDS: tuple[str, ...] = ("shift", "swap")
#: The order of the draws of :meth:`Faults.choose`: the kinds added later (``BLIND_KINDS``)
#: come last, and are drawn only when their probability is not 0, so a seed gives the faults
#: it gave before they existed.
_DRAW_ORDER: tuple[str, ...] = (
    *(kind for kind in FAULT_KINDS if kind not in BLIND_KINDS),
    *BLIND_KINDS,
)

#: The spec's answer window ends here; a late answer begins after it.
SPEC_MAX_DELAY = 0.6
NOISE_MAX = 16
#: Seconds after the request a late answer begins: uniform in this range.
DEFAULT_LATE_DELAY = (0.7, 1.5)
_SLASH = ord("/")


@dataclass(frozen=True, slots=True)
class AppliedFault:
    """One fault applied to one reply.

    ``offset`` is the position in the reply (before any noise, after the damage applied
    before this one) where the damage is, ``None`` for faults without a place (``late``,
    ``silent``, ``noise``, which is before offset 0). ``detail`` says what was done.
    """

    kind: str
    offset: int | None
    detail: str


@dataclass(frozen=True, slots=True)
class Damage:
    """A reply after the faults: what goes on the line, and when."""

    noise: bytes  # wire form, sent before the reply
    reply: bytes  # wire form (8-bit with parity bits on 8-bit lines), after the damage
    faults: tuple[AppliedFault, ...]
    silent: bool = False
    late_delay: float | None = None  # seconds after the request, replacing the normal delay

    @property
    def wire(self) -> bytes:
        """Everything sent for this exchange, in order."""
        return b"" if self.silent else self.noise + self.reply

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(f.kind for f in self.faults)


def _probability(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"faults.{key}", f"must be a probability 0..1, got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"faults.{key}", f"must be a probability 0..1, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class Faults:
    """The probability of each fault per request (0 = never, 1 = every request)."""

    xor: float = 0.0
    bcc: float = 0.0
    flip: float = 0.0
    shift: float = 0.0
    swap: float = 0.0
    parity: float = 0.0
    double: float = 0.0
    drop: float = 0.0
    truncate: float = 0.0
    noise: float = 0.0
    late: float = 0.0
    silent: float = 0.0
    late_delay: tuple[float, float] = DEFAULT_LATE_DELAY
    #: The faults of each meter's first requests, in order (``()``: a clean reply).
    script: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        for kind in FAULT_KINDS:
            object.__setattr__(self, kind, _probability(kind, getattr(self, kind)))
        object.__setattr__(self, "script", _checked_script(self.script))
        lo, hi = self.late_delay
        if not (SPEC_MAX_DELAY < lo <= hi):
            raise ConfigError(
                "faults.late_delay",
                f"must be a range beyond {SPEC_MAX_DELAY} s (lo <= hi), got {lo}-{hi}",
            )

    @classmethod
    def parse(cls, spec: str) -> Faults:
        """``"flip=0.1,late=0.05,xor=1,late_delay=0.8-1.2"``; an empty spec or ``none``: none."""
        text = spec.strip()
        if text in ("", "none"):
            return cls()
        values: dict[str, object] = {}
        for item in text.split(","):
            key, sep, raw = (part.strip() for part in item.partition("="))
            if not key:
                raise ConfigError("faults", f"empty item in {spec!r}")
            if key not in FAULT_KINDS and key not in ("late_delay", "script"):
                known = ", ".join((*FAULT_KINDS, "late_delay", "script"))
                raise ConfigError(f"faults.{key}", f"unknown fault (known: {known})")
            if key in values:
                raise ConfigError(f"faults.{key}", "given twice")
            if not sep or not raw:
                raise ConfigError(f"faults.{key}", f"needs a value: {key}=P")
            if key == "late_delay":
                values[key] = _parse_range(raw, f"faults.{key}")
                continue
            if key == "script":
                values[key] = tuple(
                    () if entry.strip() == "none" else tuple(k.strip() for k in entry.split("+"))
                    for entry in raw.split("/")
                )
                continue
            try:
                number = float(raw)
            except ValueError:
                raise ConfigError(
                    f"faults.{key}", f"must be a probability 0..1, got {raw!r}"
                ) from None
            values[key] = _probability(key, number)
        return cls(**values)  # type: ignore[arg-type]

    def __str__(self) -> str:
        items = [f"{k}={getattr(self, k):g}" for k in FAULT_KINDS if getattr(self, k)]
        if self.late and self.late_delay != DEFAULT_LATE_DELAY:
            lo, hi = self.late_delay
            items.append(f"late_delay={lo:g}" if lo == hi else f"late_delay={lo:g}-{hi:g}")
        if self.script:
            entries = ("+".join(kinds) or "none" for kinds in self.script)
            items.append("script=" + "/".join(entries))
        return ",".join(items) or "none"

    @property
    def active(self) -> bool:
        """Whether any request can get a fault (by its probability or by the script)."""
        return any(self.script) or any(getattr(self, kind) for kind in FAULT_KINDS)

    def for_request(self, number: int, rng: random.Random) -> tuple[str, ...]:
        """The faults of a meter's request ``number`` (counting from 1).

        The script's entry while the script lasts (nothing drawn from ``rng``), then
        :meth:`choose`; nothing is drawn either when every probability is 0.
        """
        if number <= len(self.script):
            return self.script[number - 1]
        if any(getattr(self, kind) for kind in FAULT_KINDS):
            return self.choose(rng)
        return ()

    def choose(self, rng: random.Random) -> tuple[str, ...]:
        """The faults of one request, drawn, in :data:`FAULT_KINDS` order.

        One draw per kind whatever its probability (the :data:`BLIND_KINDS` only when theirs
        is not 0), so that the sequence of draws (and therefore every later decision)
        depends on the seed, the request count and which blind kinds are on.
        """
        chosen = {
            kind
            for kind in _DRAW_ORDER
            if (kind not in BLIND_KINDS or getattr(self, kind))
            and rng.random() < getattr(self, kind)
        }
        return tuple(kind for kind in FAULT_KINDS if kind in chosen)

    def damage(
        self, clean: bytes, kinds: Sequence[str], rng: random.Random, *, eight_bit: bool
    ) -> Damage:
        """Apply ``kinds`` to ``clean`` (a 7-bit reply, identification to BCC)."""
        return apply_faults(clean, kinds, rng, eight_bit=eight_bit, late_delay=self.late_delay)


def _checked_script(script: object) -> tuple[tuple[str, ...], ...]:
    """The script with each request's kinds known and in :data:`FAULT_KINDS` order."""
    if isinstance(script, str) or not isinstance(script, tuple | list):
        raise ConfigError("faults.script", f"must be a sequence of fault kinds, got {script!r}")
    checked: list[tuple[str, ...]] = []
    for entry in script:
        if isinstance(entry, str) or not isinstance(entry, tuple | list):
            raise ConfigError("faults.script", f"each request needs a tuple of kinds: {entry!r}")
        unknown = [kind for kind in entry if kind not in FAULT_KINDS]
        if unknown:
            raise ConfigError("faults.script", f"unknown fault {unknown[0]!r}")
        checked.append(tuple(kind for kind in FAULT_KINDS if kind in entry))
    return tuple(checked)


def _parse_range(raw: str, key: str) -> tuple[float, float]:
    lo_text, dash, hi_text = raw.partition("-")
    try:
        lo = float(lo_text)
        hi = float(hi_text) if dash else lo
    except ValueError:
        raise ConfigError(key, f"must be seconds or a range LO-HI, got {raw!r}") from None
    return (lo, hi)


def _block_range(reply: bytes | bytearray) -> tuple[int, int]:
    """Positions of the data block's characters (after STX, before ETX)."""
    start = reply.find(STX)
    end = reply.rfind(ETX)
    if start < 0 or end <= start + 1:
        return (0, len(reply))  # not a telegram: anywhere
    return (start + 1, end)


def apply_faults(
    clean: bytes,
    kinds: Sequence[str],
    rng: random.Random,
    *,
    eight_bit: bool,
    late_delay: tuple[float, float] = DEFAULT_LATE_DELAY,
) -> Damage:
    """The damage of ``kinds`` on ``clean``, drawn from ``rng`` (see the module docstring)."""
    unknown = [k for k in kinds if k not in FAULT_KINDS]
    if unknown:
        raise ConfigError(f"faults.{unknown[0]}", "unknown fault")
    if "silent" in kinds:
        return Damage(b"", b"", (AppliedFault("silent", None, "no answer"),), silent=True)
    reply = bytearray(clean)
    applied: list[AppliedFault] = []
    start, end = _block_range(clean)
    block = bytes(clean[start : end + 1])  # data block + ETX: what the BCC covers
    last = len(reply) - 1
    if "xor" in kinds:
        old, reply[last] = reply[last], bcc_xor(block)
        applied.append(AppliedFault("xor", last, f"bcc 0x{old:02x} -> 0x{reply[last]:02x} (xor)"))
    if "bcc" in kinds:
        good = {bcc_sum7(block), bcc_xor(block)}
        old = reply[last]
        reply[last] = rng.choice([c for c in range(128) if c not in good])
        applied.append(AppliedFault("bcc", last, f"bcc 0x{old:02x} -> 0x{reply[last]:02x}"))
    if "flip" in kinds:
        at, bit = rng.randrange(start, end), rng.randrange(7)
        old = reply[at]
        reply[at] ^= 1 << bit
        applied.append(AppliedFault("flip", at, f"bit {bit}: 0x{old:02x} -> 0x{reply[at]:02x}"))
    if "shift" in kinds:
        applied.append(_shift(reply, start, end, rng))
    if "swap" in kinds:
        applied.append(_swap(reply, start, end, rng))
    if eight_bit:
        reply = bytearray(add_parity(bytes(reply)))
    if "parity" in kinds:
        at = rng.randrange(start, end)
        old = reply[at]
        reply[at] = old ^ 0x80 if eight_bit else 0x00
        applied.append(AppliedFault("parity", at, f"0x{old:02x} -> 0x{reply[at]:02x}"))
    if "double" in kinds:
        at = rng.randrange(start, end)
        reply.insert(at + 1, reply[at])
        end += 1
        applied.append(AppliedFault("double", at, f"0x{reply[at]:02x} sent twice"))
    if "drop" in kinds:
        at = rng.randrange(start, end)
        old = reply.pop(at)
        end -= 1
        applied.append(AppliedFault("drop", at, f"0x{old:02x} not sent"))
    if "truncate" in kinds:
        keep = rng.randrange(1, len(reply))
        applied.append(AppliedFault("truncate", keep, f"{len(reply) - keep} of {len(reply)} lost"))
        del reply[keep:]
    noise = b""
    if "noise" in kinds:
        top = 256 if eight_bit else 128
        size = rng.randrange(1, NOISE_MAX + 1)
        noise = bytes(_noise_byte(rng, top) for _ in range(size))
        applied.append(AppliedFault("noise", None, f"{size} characters: {noise.hex()}"))
    late: float | None = None
    if "late" in kinds:
        lo, hi = late_delay
        late = lo if lo == hi else rng.uniform(lo, hi)
        applied.append(AppliedFault("late", None, f"answer after {late:.3f} s"))
    return Damage(noise, bytes(reply), tuple(applied), late_delay=late)


def _noise_byte(rng: random.Random, top: int) -> int:
    while True:
        byte = rng.randrange(top)
        if byte & 0x7F != _SLASH:
            return byte


def _value_digits(reply: bytearray, start: int, end: int) -> list[list[int]]:
    """For each register of the block, the positions of the digits of its value.

    A value is what stands between ``(`` and ``*`` (the unit) or ``)``.
    """
    registers: list[list[int]] = []
    at = start
    while (opened := reply.find(b"(", at, end)) >= 0:
        closed = reply.find(b")", opened, end)
        if closed < 0:
            break
        star = reply.find(b"*", opened, closed)
        stop = closed if star < 0 else star
        registers.append([i for i in range(opened + 1, stop) if 0x30 <= reply[i] <= 0x39])
        at = closed + 1
    return registers


def _droppable(digits: list[int]) -> list[int]:
    """The digits that can go and leave a digit on their side of a decimal mark."""
    return [i for i in digits if i - 1 in digits or i + 1 in digits]


def _shift(reply: bytearray, start: int, end: int, rng: random.Random) -> AppliedFault:
    """Double a digit of one register's value, drop an equal one from another's (in place)."""
    registers = _value_digits(reply, start, end)
    pairs = [
        (at, gone)
        for a, doubled in enumerate(registers)
        for b, dropped in enumerate(registers)
        if a != b
        for at in doubled
        for gone in _droppable(dropped)
        if reply[at] == reply[gone]
    ]
    if not pairs:
        return AppliedFault("shift", None, "no equal digits in two registers: nothing done")
    at, gone = rng.choice(pairs)
    char = chr(reply[at])
    reply.insert(at + 1, reply[at])
    if gone > at:
        del reply[gone + 1]
    else:
        del reply[gone]
        at -= 1  # where the doubled pair now begins
    return AppliedFault("shift", at, f"{char!r} doubled at {at}, one dropped from {gone}")


def _swap(reply: bytearray, start: int, end: int, rng: random.Random) -> AppliedFault:
    """Exchange two adjacent different digits of one register's value (in place)."""
    places = [
        i
        for digits in _value_digits(reply, start, end)
        for i in digits
        if i + 1 in digits and reply[i] != reply[i + 1]
    ]
    if not places:
        return AppliedFault("swap", None, "no two adjacent different digits: nothing done")
    at = rng.choice(places)
    before = reply[at : at + 2].decode("ascii")
    reply[at], reply[at + 1] = reply[at + 1], reply[at]
    return AppliedFault("swap", at, f"{before} at {at} -> {before[::-1]}")

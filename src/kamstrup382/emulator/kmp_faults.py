"""Faults of KMP's own, for the emulated KMP line: what goes wrong between a 382J and its head.

Each kind has a probability per request, drawn from the meter's seeded :class:`random.Random`
(the same seed and requests give the same faults); a script names the faults of a meter's
first requests in order (``script=silent/crc+echo/none``). The reply is built clean by the
protocol core, then:

- ``echo``: the request comes back before the reply, as an optical head (or a meter) that
  echoes what it receives does; a reader skips it to the reply's ``0x40``.
- ``crc``: one bit of the CRC is inverted before stuffing: the frame's stuffing is valid, its
  CRC is not (a :class:`~kamstrup382.errors.CrcError` with both values at the reader).
- ``stuffing``: the byte after an escape is replaced by one that stands for no reserved byte
  (or, in a frame without escapes, a raw ``0x06`` is put inside it): a
  :class:`~kamstrup382.errors.StuffingError` at the reader.
- ``late``: the answer begins ``late_delay`` seconds after the request (uniform in a range,
  0.7-1.5 s by default): past a reader's answer window.
- ``silent``: no answer at all (the other faults drawn are then void).

``KmpFaults.parse("crc=0.1,echo=1")`` reads the command line form; ``str()`` writes it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from kamstrup382.errors import ConfigError
from kamstrup382.protocol.kmp import RESERVED, Frame, stuff
from kamstrup382.protocol.kmp.frame import ESCAPE, STOP, crc16

__all__ = ["KMP_FAULT_KINDS", "KmpDamage", "KmpFaults"]

KMP_FAULT_KINDS: tuple[str, ...] = ("echo", "crc", "stuffing", "late", "silent")
DEFAULT_LATE_DELAY = (0.7, 1.5)


@dataclass(frozen=True, slots=True)
class KmpDamage:
    """A reply after the faults: what goes out (``echo`` first, then ``reply``), and when."""

    echo: bytes
    reply: bytes
    kinds: tuple[str, ...]
    silent: bool = False
    late_delay: float | None = None


@dataclass(frozen=True, slots=True)
class KmpFaults:
    """The probability of each kind per request, and a script for the first requests."""

    rates: tuple[tuple[str, float], ...] = ()
    script: tuple[tuple[str, ...], ...] = ()
    late_delay: tuple[float, float] = DEFAULT_LATE_DELAY
    _by_kind: dict[str, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_kind = dict(self.rates)
        for kind, rate in self.rates:
            if kind not in KMP_FAULT_KINDS:
                raise ConfigError(
                    f"faults.{kind}", f"not a KMP fault (kinds: {', '.join(KMP_FAULT_KINDS)})"
                )
            if isinstance(rate, bool) or not 0.0 <= rate <= 1.0:
                raise ConfigError(f"faults.{kind}", f"must be a probability 0..1, got {rate!r}")
        for step in self.script:
            for kind in step:
                if kind not in KMP_FAULT_KINDS:
                    raise ConfigError("faults.script", f"{kind!r} is not a KMP fault")
        object.__setattr__(self, "_by_kind", by_kind)

    @classmethod
    def parse(cls, text: str) -> KmpFaults:
        rates: list[tuple[str, float]] = []
        script: tuple[tuple[str, ...], ...] = ()
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep:
                raise ConfigError("faults", f"{item!r} is not KIND=PROBABILITY")
            if key == "script":
                script = tuple(
                    () if step == "none" else tuple(step.split("+"))
                    for step in value.strip().split("/")
                )
                continue
            try:
                rates.append((key, float(value)))
            except ValueError:
                raise ConfigError(f"faults.{key}", f"{value!r} is not a number") from None
        return cls(tuple(rates), script)

    def __str__(self) -> str:
        parts = [f"{kind}={rate:g}" for kind, rate in self.rates]
        if self.script:
            steps = ("+".join(step) if step else "none" for step in self.script)
            parts.append("script=" + "/".join(steps))
        return ",".join(parts) or "none"

    def choose(self, rng: random.Random, request_number: int) -> tuple[str, ...]:
        """The kinds for the ``request_number``-th request (from 0), in application order."""
        if request_number < len(self.script):
            chosen = set(self.script[request_number])
        else:
            chosen = {
                k for k in KMP_FAULT_KINDS if (r := self._by_kind.get(k, 0.0)) and rng.random() < r
            }
        return tuple(k for k in KMP_FAULT_KINDS if k in chosen)

    def apply(
        self, kinds: tuple[str, ...], request: bytes, reply: Frame, rng: random.Random
    ) -> KmpDamage:
        """``reply`` on the wire after ``kinds`` (``request``: the wire bytes to echo)."""
        if "silent" in kinds:
            return KmpDamage(b"", b"", ("silent",), silent=True)
        body = reply.body
        crc = crc16(body)
        if "crc" in kinds:
            crc ^= 1 << rng.randrange(16)
        inner = stuff(body + crc.to_bytes(2, "big"))
        if "stuffing" in kinds:
            inner = _break_stuffing(inner, rng)
        wire = bytes((reply.direction.start,)) + inner + bytes((STOP,))
        late = rng.uniform(*self.late_delay) if "late" in kinds else None
        return KmpDamage(request if "echo" in kinds else b"", wire, kinds, late_delay=late)


def _break_stuffing(inner: bytes, rng: random.Random) -> bytes:
    escapes = [i for i, b in enumerate(inner[:-1]) if b == ESCAPE]
    out = bytearray(inner)
    if escapes:
        at = rng.choice(escapes) + 1
        choices = [b for b in range(256) if (b ^ 0xFF) not in RESERVED and b not in RESERVED]
        out[at] = rng.choice(choices)
    else:
        out.insert(rng.randrange(1, len(out)), 0x06)
    return bytes(out)

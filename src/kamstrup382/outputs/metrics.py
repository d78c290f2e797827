"""The collector's own Prometheus metrics, declared as data.

The registers' metrics are declared by register in :mod:`kamstrup382.outputs.descriptions`;
these families say how the readouts went, what each meter is, and how the collector and its
outputs are doing. :class:`~kamstrup382.outputs.prometheus.PrometheusOutput` builds one
prometheus-client metric per entry of :data:`FAMILIES` and sets them by key; a new metric is a
new entry here (and the code that sets it), and its documentation a row in docs/publishing.md.

Names follow Prometheus' conventions (``promtool check metrics`` passes on the exposition):
base units (seconds), a counter's samples end in ``_total`` (its family name here does not),
an info metric ends in ``_info`` and is 1, timestamps end in ``_timestamp_seconds``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from kamstrup382.errors import Kamstrup382Error, LineError, ProtocolError
from kamstrup382.storage import MISSED

__all__ = ["BUCKETS", "FAMILIES", "Family", "MetricKind", "failure_kinds"]


class MetricKind(enum.StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: its name as exposed (a counter's without ``_total``), kind, help
    text and label names."""

    name: str
    kind: MetricKind
    help: str
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name.startswith("kamstrup382_") or self.name.endswith("_total"):
            raise ValueError(
                f"{self.name}: kamstrup382_ prefix, and no _total (added for counters)"
            )


#: The readout durations' bucket bounds, in seconds, for both protocols' readouts. Mode A at
#: 300 baud: 5.75 s to 6.33 s on the wire for the 685-382's telegram (172 characters of 10
#: bits, and the meter's 20-600 ms answer time), about 6.5 s read: 5.0 to 8.0 straddle it,
#: 10, 20 and 60 hold retries. KMP at 9600 baud: about 0.45 s for the collector's readout of
#: the 382 register set (four exchanges; ``k382 read``'s two, 0.32 s): 0.25, 0.4 and 0.5
#: straddle it, 0.1 holds fast emulated lines; at 1200 baud 8N2 about 2.4 s, between 2.0 and
#: 2.5. Bounds are only ever added (a bound taken away breaks ``rate()`` over the stored
#: series of its ``le``).
BUCKETS = (0.1, 0.25, 0.4, 0.5, 1.0, 2.0, 2.5, 5.0, 6.0, 7.0, 8.0, 10.0, 20.0, 60.0)

_C, _G, _H = MetricKind.COUNTER, MetricKind.GAUGE, MetricKind.HISTOGRAM

#: By the key the output sets them by.
FAMILIES: Mapping[str, Family] = {
    # -- per meter ---------------------------------------------------------------------------
    "up": Family(
        "kamstrup382_up",
        _G,
        "1 when the meter's last readout succeeded, 0 when it failed or none was made yet",
        ("meter",),
    ),
    "last_attempt": Family(
        "kamstrup382_last_attempt_timestamp_seconds",
        _G,
        "Unix time when the meter's last readout attempt began, successful or not",
        ("meter",),
    ),
    "last_success": Family(
        "kamstrup382_last_success_timestamp_seconds",
        _G,
        "Unix time when the newest reading of the meter was taken",
        ("meter",),
    ),
    "interval": Family(
        "kamstrup382_meter_interval_seconds",
        _G,
        "The interval the meter is read at, as configured",
        ("meter",),
    ),
    "meter_info": Family(
        "kamstrup382_meter_info",
        _G,
        "What the meter said of itself in its newest reading (always 1; protocol iec: type "
        "number, customer number, module, BCC; kmp: meter type, software revision, serial)",
        (
            "meter",
            "protocol",
            "type_number",
            "customer_number",
            "module",
            "bcc_algorithm",
            "meter_type",
            "software",
            "serial",
        ),
    ),
    "successes": Family(
        "kamstrup382_readout_successes",
        _C,
        "Readouts that gave a reading (after retries)",
        ("meter",),
    ),
    "failures": Family(
        "kamstrup382_readout_failures",
        _C,
        "Readouts that failed after all attempts, by error kind (missed: not read in its slot)",
        ("meter", "kind"),
    ),
    "duration": Family(
        "kamstrup382_readout_duration_seconds",
        _H,
        "Duration of each successful readout of the meter, from request to last byte "
        "(only with per_meter_histograms)",
        ("meter",),
    ),
    # -- per collector -----------------------------------------------------------------------
    "fleet_duration": Family(
        "kamstrup382_fleet_readout_duration_seconds",
        _H,
        "Duration of each successful readout of every meter, from request to last byte, by "
        "protocol (iec: mode A, kmp)",
        ("protocol",),
    ),
    "build_info": Family(
        "kamstrup382_build_info",
        _G,
        "The collector's version and Python (always 1)",
        ("version", "python"),
    ),
    "outbox_pending": Family(
        "kamstrup382_outbox_pending_readings",
        _G,
        "Readings stored but not yet published by the output (its outbox backlog)",
        ("output",),
    ),
    "outbox_age": Family(
        "kamstrup382_outbox_oldest_age_seconds",
        _G,
        "Age of the first reading queued for the output and not yet published (0: none waits)",
        ("output",),
    ),
}


def _subclasses(root: type[Kamstrup382Error]) -> Iterator[type[Kamstrup382Error]]:
    yield root
    for child in root.__subclasses__():
        yield from _subclasses(child)


def failure_kinds() -> tuple[str, ...]:
    """Every ``kind`` a failed readout can have: the errors of the meter's bytes
    (:class:`~kamstrup382.errors.ProtocolError`) and of the line
    (:class:`~kamstrup382.errors.LineError`), and :data:`~kamstrup382.storage.MISSED`. The
    output starts each meter's failure counters at 0 for all of them, so that the first
    failure of a kind shows in ``increase()``."""
    kinds = [cls.kind for root in (ProtocolError, LineError) for cls in _subclasses(root)]
    return tuple(dict.fromkeys([*kinds, MISSED]))

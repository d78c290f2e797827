"""Process tuning for a program that runs a :class:`~kamstrup382.collector.Collector`.

Not the collector's business but its process's: ``k382 collect`` and
``bench/bench_collector.py`` call these around the event loop. Why these values, with the
measurements behind them: ``docs/collector.md``.

- :func:`raise_file_limit`: one socket per TCP meter needs more open files than the usual soft
  limit of 1,024.
- :func:`collector_runtime`: the garbage collector's thresholds (a cycle of thousands of
  readouts allocates millions of short-lived objects that die young) and the interpreter's
  thread switch interval (the storage thread must get the interpreter's lock back from a busy
  event loop soon after each statement), restored afterwards.
"""

from __future__ import annotations

import contextlib
import gc
import resource
import sys
from collections.abc import Iterator

__all__ = ["GC_THRESHOLD", "SWITCH_INTERVAL", "collector_runtime", "raise_file_limit"]

#: The garbage collector's thresholds while collecting (``gc.set_threshold``; Python's default
#: first threshold is 700).
GC_THRESHOLD = (50_000, 20, 100)
#: The interpreter's thread switch interval while collecting, in seconds
#: (``sys.setswitchinterval``; Python's default is 5 ms).
SWITCH_INTERVAL = 0.001


def raise_file_limit() -> int:
    """Raise the soft limit of open files to the hard limit; return the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@contextlib.contextmanager
def collector_runtime(
    threshold: tuple[int, int, int] = GC_THRESHOLD, switch_interval: float = SWITCH_INTERVAL
) -> Iterator[None]:
    """Run the block with the garbage collector's thresholds at ``threshold`` and the thread
    switch interval at ``switch_interval``, then restore both."""
    before = gc.get_threshold()
    interval = sys.getswitchinterval()
    gc.set_threshold(*threshold)
    sys.setswitchinterval(switch_interval)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        sys.setswitchinterval(interval)

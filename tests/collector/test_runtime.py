"""The process tuning around a collector: open files, garbage collector, thread switches."""

from __future__ import annotations

import gc
import resource
import sys

import pytest

from kamstrup382.collector.runtime import (
    GC_THRESHOLD,
    SWITCH_INTERVAL,
    collector_runtime,
    raise_file_limit,
)


def test_collector_runtime_sets_gc_and_switch_interval_and_restores_them_even_on_error() -> None:
    before = gc.get_threshold(), sys.getswitchinterval()
    with collector_runtime():
        assert gc.get_threshold() == GC_THRESHOLD
        assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL)
    assert (gc.get_threshold(), sys.getswitchinterval()) == before
    with pytest.raises(RuntimeError), collector_runtime((1000, 5, 5), 0.002):
        assert gc.get_threshold() == (1000, 5, 5)
        assert sys.getswitchinterval() == pytest.approx(0.002)
        raise RuntimeError("boom")
    assert (gc.get_threshold(), sys.getswitchinterval()) == before


def test_raise_file_limit_raises_the_soft_limit_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(soft, 256)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        limit = raise_file_limit()
        assert limit == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if hard != resource.RLIM_INFINITY:
            assert limit == hard
        else:  # 2**20, where the kernel allows that many
            assert limit in (lowered, max(lowered, 1 << 20))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

"""Waiting for the first of several things (a clock time, a stop event, tasks)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

__all__ = ["wait_first"]


async def wait_first(*awaitables: Awaitable[object]) -> None:
    """Wait until the first of ``awaitables`` completes; cancel the others."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

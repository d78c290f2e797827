"""Shared fixtures, one plugin module per real component the tests start."""

from __future__ import annotations

import os

import pytest

pytest_plugins = [
    "tests.fixtures.emulator",
    "tests.fixtures.postgres",
    "tests.fixtures.mosquitto",
    "tests.fixtures.prometheus",
    "tests.fixtures.influxdb",
    "tests.fixtures.browser",
]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With ``K382_NO_SKIPS`` set (``scripts/test``, hence CI), a skipped test fails the run.

    The fixtures skip when a real component (PostgreSQL, Chromium) is not installed; where
    the test command installed them, a skip means a test that did not run.
    """
    if not os.environ.get("K382_NO_SKIPS") or exitstatus != pytest.ExitCode.OK:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    skipped = reporter.stats.get("skipped", [])
    if skipped:
        reporter.ensure_newline()
        reporter.write_line(f"K382_NO_SKIPS: {len(skipped)} test(s) skipped; failing the run")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

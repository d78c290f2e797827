"""Shared fixtures, one plugin module per real component the tests start."""

pytest_plugins = [
    "tests.fixtures.emulator",
    "tests.fixtures.postgres",
    "tests.fixtures.mosquitto",
    "tests.fixtures.browser",
]

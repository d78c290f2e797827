"""The pty quirk the emulator works around (``NOTES.md``, "Testing without a meter")."""

from __future__ import annotations

import os
import termios

import pytest
import serial

from kamstrup382.emulator.pty import park


def test_pty_without_the_parking_would_refuse_a_second_open() -> None:
    """The quirk itself, on a bare pty: why the emulator parks the slave."""
    master, slave = os.openpty()
    try:
        path = os.ttyname(slave)
        serial.Serial(path, 300, bytesize=7, parity="E", stopbits=1).close()
        with pytest.raises(termios.error):
            serial.Serial(path, 300, bytesize=7, parity="E", stopbits=1).close()
        park(slave)
        serial.Serial(path, 300, bytesize=7, parity="E", stopbits=1).close()
    finally:
        os.close(master)
        os.close(slave)

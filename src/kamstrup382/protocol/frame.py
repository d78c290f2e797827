"""The characters of an IEC 62056-21 mode A exchange.

Reader to meter::

    / ? ! CR LF                                   the request (5 characters)

Meter to reader::

    / K A M SP 6 8 5 - 3 8 2 - O K - 1 5 CR LF    identification line
    STX                                           start of the data block
    0 . 0 ( 0 0 0 5 4 0 4 2 ) CR LF               data lines ...
    1 . 6 * 1 ( 0 0 0 0 0 0 , 0 ) ! CR LF         ... the last one carries the end marker
    ETX BCC                                       end of block, block check character

The BCC covers everything after STX up to and including ETX.
"""

from __future__ import annotations

__all__ = ["CRLF", "END_MARKER", "ETX", "REQUEST", "START", "STX"]

STX = 0x02
ETX = 0x03
START = ord("/")
END_MARKER = ord("!")
CRLF = b"\r\n"

#: The mode A request: ``/?!`` CR LF, no device address.
REQUEST = b"/?!\r\n"

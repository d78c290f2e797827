"""``k382 decode [FILE|-]``: decode one captured reply and print its registers.

The input is the reply as raw bytes (from ``/`` to the BCC) or as hex text (whitespace and line
breaks allowed anywhere); which one is detected from the content: a raw reply always holds
characters that are not hex digits (``/``, STX, ETX). ``-`` reads standard input; no FILE
decodes the specification's example telegram, built into the package.

``--bcc auto`` (the default) accepts the Kamstrup 382's 7-bit sum or the IEC 62056-21 XOR and
reports which one matched; ``sum7`` or ``xor`` insist on one. ``--eight-bit``: the bytes carry
the even-parity bit in bit 7 (a capture from a TCP gateway or an 8N1 optical head); it is
checked and stripped.

The input is bounded like the readers' replies: a reply longer than the decoder's
:data:`~kamstrup382.protocol.decoder.DEFAULT_MAX_REPLY` (2 KiB) is refused, and so is hex text
longer than :data:`MAX_HEX_TEXT` (room for such a reply as a spaced hex dump), without reading
more than that bound + 1 byte (``k382 decode /dev/zero`` ends at once).

A capture whose first byte is ``0x80``, ``0x40`` or ``0x06`` is KMP (the binary protocol of
the 382J, Jx3, Lx7 and M; :mod:`kamstrup382.cli.kmp_capture`): its frames are printed, and
``--json`` gives ``protocol`` (``kmp``), ``direction``, ``cid`` and ``registers`` (``id``,
``name`` or null, ``value`` with the meter's digits, ``unit``); a bad CRC is an error of kind
``crc``.

Exit status: 0 decoded; 2 the input is not a valid reply (one line on standard error,
``error: <kind>: <message>``, and nothing on standard output) or cannot be read.
"""

from __future__ import annotations

import sys
from importlib import resources
from typing import BinaryIO

import click

from kamstrup382.cli.kmp_capture import is_kmp, kmp_json, kmp_text
from kamstrup382.errors import Kamstrup382Error, UsageError
from kamstrup382.protocol import BccMode, Telegram, decode_reply
from kamstrup382.protocol.decoder import DEFAULT_MAX_REPLY
from kamstrup382.render import dumps, registers_table, telegram_json

__all__ = [
    "MAX_HEX_TEXT",
    "SPEC_EXAMPLE",
    "decode",
    "parse_capture",
    "read_capture",
    "spec_example",
]

#: The specification's example reply (7-bit form, 167 bytes), shipped in the package.
SPEC_EXAMPLE = "data/spec-example.bin"
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_WHITESPACE = frozenset(b" \t\r\n\f\v")
#: The longest hex text read: a reply of the longest size as hex digits, a space after each
#: pair and a line break every 16 bytes (``xxd``/``hexdump`` style) fit in it.
MAX_HEX_TEXT = 4 * DEFAULT_MAX_REPLY


def spec_example() -> bytes:
    return resources.files("kamstrup382").joinpath(SPEC_EXAMPLE).read_bytes()


def parse_capture(data: bytes) -> bytes:
    """The reply's bytes: ``data`` itself, or what its hex text stands for.

    Hex text is recognised when ``data`` holds only hex digits and whitespace (and at least one
    digit); an odd number of digits is a :class:`UsageError`.
    """
    chars = set(data)
    if chars and chars <= _HEX_DIGITS | _WHITESPACE and chars & _HEX_DIGITS:
        digits = bytes(b for b in data if b in _HEX_DIGITS)
        if len(digits) % 2:
            raise UsageError(f"hex input has an odd number of digits ({len(digits)})")
        return bytes.fromhex(digits.decode("ascii"))
    return data


def read_capture(source: BinaryIO) -> bytes:
    """The reply in ``source`` (raw or hex), reading at most :data:`MAX_HEX_TEXT` + 1 bytes;
    a :class:`UsageError` for a reply longer than the decoder's maximum."""
    data = source.read(MAX_HEX_TEXT + 1)
    if len(data) > MAX_HEX_TEXT:
        raise UsageError(
            f"input larger than {MAX_HEX_TEXT} bytes: not one reply "
            f"(a reply is at most {DEFAULT_MAX_REPLY} bytes)"
        )
    reply = parse_capture(data)
    if len(reply) > DEFAULT_MAX_REPLY:
        raise UsageError(
            f"reply of {len(reply)} bytes: longer than the {DEFAULT_MAX_REPLY} bytes "
            "a reply may have"
        )
    return reply


def describe(telegram: Telegram) -> str:
    """Identification and BCC lines above the register table."""
    ident = telegram.identification
    line = f"identification  {ident}"
    tn = ident.type_number
    if tn is not None:
        line += (
            f"  ({tn.phases} phases, current code {tn.current_code}, "
            f"class {tn.accuracy_class}, module {tn.module}, label {tn.label})"
        )
    else:  # no type number: the model its identification names
        line += f"  ({telegram.dialect.label})"
    bcc = f"bcc             {telegram.bcc_algorithm.value} 0x{telegram.bcc:02x} valid"
    return f"{line}\n{bcc}\n\n{registers_table(telegram)}"


@click.command("decode")
@click.argument("file", required=False, type=click.File("rb"))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option(
    "--bcc",
    type=click.Choice([m.value for m in BccMode]),
    default=BccMode.AUTO.value,
    show_default=True,
    help="Block check: auto accepts the 7-bit sum or the IEC XOR and says which matched.",
)
@click.option(
    "--eight-bit",
    is_flag=True,
    help="Bytes carry the even-parity bit in bit 7 (TCP gateway, 8N1 head): check and strip it.",
)
def decode(file: BinaryIO | None, as_json: bool, bcc: str, eight_bit: bool) -> None:
    """Decode a captured reply (raw bytes or hex text; FILE, - for stdin, none: the spec example)
    and print its registers. Mode A or KMP, told by the first byte."""
    try:
        data = spec_example() if file is None else read_capture(file)
        if is_kmp(data):
            text = kmp_json(data) if as_json else kmp_text(data)
        else:
            telegram = decode_reply(data, bcc=BccMode(bcc), eight_bit=eight_bit)
            text = (
                dumps(telegram_json(telegram), indent=2) + "\n" if as_json else describe(telegram)
            )
    except Kamstrup382Error as exc:
        click.echo(f"error: {exc.kind}: {exc}", err=True)
        sys.stdout.flush()
        raise click.exceptions.Exit(2) from exc
    click.echo(text, nl=False)

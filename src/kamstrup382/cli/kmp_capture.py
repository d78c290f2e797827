"""``k382 decode`` for a KMP capture: its frames as text or JSON.

A capture whose first byte is a KMP start byte (``0x80`` request, ``0x40`` reply) or an
acknowledgement (``0x06``) is KMP; it may hold several frames (a request, its echo, the
reply). One frame gives one JSON object; several give ``{"protocol": "kmp", "frames": [...]}``.
"""

from __future__ import annotations

from typing import Any

from kamstrup382.protocol.kmp import (
    ACK,
    Ack,
    Frame,
    GetRegisterRequest,
    RegisterReply,
    SerialNoReply,
    TypeReply,
    decode_capture,
    decode_message,
    register_name,
)
from kamstrup382.render import dumps, format_value

__all__ = ["is_kmp", "kmp_json", "kmp_text"]

_FIRST_BYTES = frozenset((0x80, 0x40, ACK))


def is_kmp(data: bytes) -> bool:
    """The capture is KMP: its first byte starts a frame or is an acknowledgement."""
    return bool(data) and data[0] in _FIRST_BYTES


def _frame_json(event: Frame | Ack) -> dict[str, Any]:
    if isinstance(event, Ack):
        return {"protocol": "kmp", "direction": "reply", "ack": True}
    message = decode_message(event)
    obj: dict[str, Any] = {
        "protocol": "kmp",
        "direction": event.direction.value,
        "address": event.address,
        "cid": event.cid,
        "command": type(message).command.name.lower(),
        "crc": f"{event.crc:04x}",
    }
    if isinstance(message, TypeReply):
        obj["meter_type"] = message.meter_type
        obj["software_revision"] = message.revision_text
    elif isinstance(message, SerialNoReply):
        obj["serial"] = message.serial
    elif isinstance(message, GetRegisterRequest):
        obj["registers"] = [
            {"id": rid, "name": register_name(rid), "value": None, "unit": None}
            for rid in message.ids
        ]
    elif isinstance(message, RegisterReply):
        obj["registers"] = [
            {"id": r.id, "name": r.name, "value": r.value, "unit": r.unit}
            for r in message.registers
        ]
    return obj


def kmp_json(data: bytes) -> str:
    frames = [_frame_json(event) for event in decode_capture(data)]
    obj = frames[0] if len(frames) == 1 else {"protocol": "kmp", "frames": frames}
    return dumps(obj, indent=2) + "\n"


def kmp_text(data: bytes) -> str:
    blocks = []
    for event in decode_capture(data):
        obj = _frame_json(event)
        if obj.get("ack"):
            blocks.append("kmp acknowledgement (0x06)\n")
            continue
        head = (
            f"kmp {obj['direction']}  address 0x{obj['address']:02x}  "
            f"{obj['command']} (cid 0x{obj['cid']:02x})  crc 0x{obj['crc']} valid"
        )
        lines = [head]
        if "meter_type" in obj:
            lines.append(
                f"meter type 0x{obj['meter_type']:04x}, software revision "
                f"{obj['software_revision']}"
            )
        if "serial" in obj:
            lines.append(f"serial number {obj['serial']}")
        rows = [("id", "name", "value", "unit")]
        for reg in obj.get("registers", []):
            value = "" if reg["value"] is None else format_value(reg["value"])
            rows.append((f"0x{reg['id']:04x}", reg["name"] or "-", value, reg["unit"] or ""))
        if len(rows) > 1:
            widths = [max(len(row[col]) for row in rows) for col in range(4)]
            lines.append("")
            lines.extend(
                f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}  {d}".rstrip()
                for a, b, c, d in rows
            )
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)

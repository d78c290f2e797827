"""The ground-truth log: each exchange, once the line is done with it, with the meter's true
registers, the reply they make and exactly what went out."""

from __future__ import annotations

import functools
import json
import threading

from kamstrup382.clock import ManualClock
from kamstrup382.emulator import ConstantLoad, EmulatorThread
from kamstrup382.emulator.line import Exchange
from kamstrup382.protocol import BccMode, decode_reply, encode_reply, strip_parity
from tests.fixtures.emulator import FAST, START, RawLine, wait_for


class Truth:
    """What ``on_exchange`` was given, as the loop's thread gave it."""

    def __init__(self) -> None:
        self.entries: list[tuple[int, Exchange, dict[str, object]]] = []
        self._lock = threading.Lock()

    def __call__(self, index: int, exchange: Exchange) -> None:
        record = json.loads(json.dumps(exchange.record()))  # it is JSON
        with self._lock:
            self.entries.append((index, exchange, record))

    def count(self) -> int:
        with self._lock:
            return len(self.entries)


def emulator(truth: Truth, faults: str, *, speed: float = FAST, meters: int = 2) -> EmulatorThread:
    return EmulatorThread(
        meters,
        speed=speed,
        delay=0.02,
        faults=faults,
        seed=5,
        clock=ManualClock(START),
        load=ConstantLoad(1),
        on_exchange=truth,
    )


def ended(emu: EmulatorThread, index: int, count: int) -> bool:
    """Whether meter ``index``'s exchange number ``count + 1`` is over."""
    log = emu.log(index)
    return len(log) > count and log[count].ended


def test_each_exchange_is_logged_with_its_truth_and_what_went_out() -> None:
    truth = Truth()
    with emulator(truth, "shift=0.4,swap=0.4,silent=0.2,noise=0.2") as emu:
        received: dict[int, list[bytes]] = {0: [], 1: []}
        for index in (0, 1):
            with RawLine(emu.ports[index]) as line:
                for _ in range(12):
                    count = len(emu.log(index))
                    line.send()
                    wait_for(functools.partial(ended, emu, index, count))
                    received[index].append(line.drain())
        wait_for(lambda: truth.count() == 24)
        logs = {index: emu.log(index) for index in (0, 1)}
    kinds: set[str] = set()
    for index in (0, 1):
        entries = [(e, r) for i, e, r in truth.entries if i == index]
        assert [e for e, _ in entries] == logs[index]  # each once, in order
        for (exchange, record), got in zip(entries, received[index], strict=True):
            kinds.update(exchange.kinds)
            assert record["number"] == exchange.number and record["complete"] is True
            assert bytes.fromhex(str(record["wire"])) == got  # exactly the bytes that went out
            assert str(record["sent"]).encode("ascii") == strip_parity(got)
            assert record["faults"] == [
                {"kind": f.kind, "offset": f.offset, "detail": f.detail} for f in exchange.faults
            ]
            if exchange.silent:
                assert record["values"] is None and got == b"" and record["clean"] == ""
                continue
            values = exchange.values
            assert values is not None
            assert record["values"] == {k: str(v) for k, v in values.as_dict().items()}
            clean = encode_reply(emu.models[index].identification, values)
            assert str(record["clean"]).encode("ascii") == clean
            if exchange.kinds in (("shift",), ("swap",)):  # the block check cannot see it
                telegram = decode_reply(strip_parity(got), bcc=BccMode.AUTO)
                assert telegram.raw != clean  # (the values may survive: leading zeros moved)
            elif not exchange.faults:
                assert decode_reply(strip_parity(got)).meter_values() == values
    assert {"shift", "swap", "silent"} <= kinds


def test_a_reply_cut_short_is_logged_as_far_as_it_went() -> None:
    truth = Truth()
    with emulator(truth, "", speed=5, meters=1) as emu:  # a reply takes about a second
        with RawLine(emu.ports[0]) as line:
            line.send()
            head = line.read_exactly(20)
        wait_for(lambda: truth.count() == 1)
    ((_, exchange, record),) = truth.entries
    assert record["complete"] is False and not exchange.complete
    sent = bytes.fromhex(str(record["wire"]))
    assert sent.startswith(head) and len(sent) < len(exchange.wire)
    assert str(record["clean"]).encode("ascii") == exchange.clean

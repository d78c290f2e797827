"""Benchmark: the collector's work at a reply's end, in instructions (callgrind), against a tree.

    python bench/bench_completion.py                      # this tree
    python bench/bench_completion.py --against ../old/src # and another tree's, side by side

At 10,000 meters every reply of a slot ends within the requests' spread (0.2-0.4 s), and the
collector finishes them one after the other on one core: this work, times the meters, is the
cycle's tail (docs/collector.md, "where the steady cycle's time goes"). Timed on a shared
machine it varies more from hour to hour than a change moves it, so it is counted in
instructions by ``valgrind --tool=callgrind``, which the machine's load does not change.

Measured (``--part``):

- ``end`` (the default): the last of the benchmark's 28 chunks of the specification's example
  through a reader's readout (the BCC, the block's grammar, the telegram built, the plausibility
  rules of one telegram), then concluded, judged against the meter's last reading and made a
  record;
- ``receive``: the other 27 chunks, for scale (the reply as it arrives over 5.7 s).

Each count runs ``N`` and ``2N`` readouts in a fresh interpreter under callgrind and takes the
difference, so that the interpreter's start falls out: instructions per readout. A reply's end
needs readouts that received the rest first: its count is that of the whole readout less the
``receive`` count. With ``--against``, the same for the other tree's ``src`` (``PYTHONPATH``),
and the ratio this / other. Needs valgrind (Debian's ``valgrind``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"

#: The part counted, run ``count`` times after the set-up (argv: part, count).
PART = """
import sys
from datetime import UTC, datetime, timedelta
from kamstrup382.collector.history import History, observation_of
from kamstrup382.collector.records import reading_record
from kamstrup382.protocol import add_parity
from kamstrup382.reader.port import LineMode
from kamstrup382.reader.session import Session
from importlib.resources import files

part, count = sys.argv[1], int(sys.argv[2])
now = datetime(2026, 12, 3, 12, tzinfo=UTC)
reply = add_parity(files("kamstrup382").joinpath("data/spec-example.bin").read_bytes())
size = len(reply) // 28 + 1
chunks = [reply[at : at + size] for at in range(0, len(reply), size)]
session = Session(line=LineMode.AUTO)
history = History()

def received():
    readout = session.readout()
    readout.sent(0.0, now)
    for index, chunk in enumerate(chunks[:-1], start=1):
        readout.receive(chunk, index * 0.2)
    return readout

first = received()
first.receive(chunks[-1], 6.0)
reading = session.conclude(first, "bench", 1)
history.accepted("m", observation_of(reading.meter_values(), now - timedelta(hours=1), None))
if part == "receive":
    for _ in range(count):
        received()
else:  # "whole": the readouts received, then their ends
    readouts = [received() for _ in range(count)]  # the receive part, taken off after
    for readout in readouts:
        readout.receive(chunks[-1], 6.0)
        judge = history.judge("m", lambda _: now)
        reading = session.conclude(readout, "bench", 1, judge)
        accepted = judge.accepted
        reading_record("m", now, reading, accepted.at, accepted.values)
"""


def instructions(src: Path, part: str, count: int) -> int:
    """Instructions of one interpreter running ``part`` ``count`` times with ``src``."""
    with tempfile.TemporaryDirectory(prefix="k382-callgrind-") as folder:
        out = Path(folder) / "callgrind.out"
        env = {**os.environ, "PYTHONPATH": str(src), "PYTHONHASHSEED": "0"}
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-c",
                PART,
                part,
                str(count),
            ],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for line in out.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise SystemExit(f"no instruction total in callgrind's output for {src}")


def per_readout(src: Path, part: str, count: int) -> float:
    """Instructions per readout of ``part``: the difference of ``2 * count`` and ``count``
    readouts (for ``end``, less the ``receive`` part its readouts ran first)."""

    def counted(what: str) -> float:
        return (instructions(src, what, 2 * count) - instructions(src, what, count)) / count

    receive = counted("receive")
    return receive if part == "receive" else counted("whole") - receive


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--part", choices=("end", "receive"), default="end")
    parser.add_argument("--count", type=int, default=300, help="readouts of the smaller run")
    parser.add_argument("--against", type=Path, help="another tree's src folder, side by side")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (Debian: apt-get install valgrind)")
    ours = per_readout(SRC, args.part, args.count)
    print(f"{args.part}: {ours:,.0f} instructions a readout ({SRC})")
    if args.against is not None:
        theirs = per_readout(args.against, args.part, args.count)
        print(f"{args.part}: {theirs:,.0f} instructions a readout ({args.against})")
        print(f"this / other: {ours / theirs:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``k382 demo`` run as a real subprocess on a free loopback port (for the e2e tests)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

__all__ = ["DemoProcess"]


class DemoProcess:
    """Starts ``python -m kamstrup382 demo``, finds the URL it prints, stops it with SIGINT."""

    def __init__(
        self, *args: str, db: Path | None = None, factor: float = 5760.0, cwd: Path | None = None
    ) -> None:
        self.args = ["demo", "--http", "127.0.0.1:0", "--speed-factor", f"{factor:g}", *args]
        if db is not None:
            self.args += ["--db", str(db)]
        self.db = db
        self.cwd = cwd
        self.url = ""
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.process: subprocess.Popen[str] | None = None
        self._pump_thread: threading.Thread | None = None

    def _pump(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def start(self, timeout: float = 30.0) -> DemoProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("K382_TOKEN", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kamstrup382", *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=self.cwd,
        )
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()
        deadline = time.monotonic() + timeout
        while not self.url:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self._kill()
                raise AssertionError(f"demo printed no URL in {timeout} s: {self.lines}") from None
            if line is None:
                self._kill()
                raise AssertionError(f"demo exited before serving: {self.lines}")
            self.lines.append(line)
            if line.startswith("Dashboard: "):
                self.url = line.removeprefix("Dashboard: ").rstrip("/")
        return self

    def _kill(self) -> None:
        """After a failed start: no process or pipe left behind."""
        assert self.process is not None and self.process.stdout is not None
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._close_pipe()

    def _close_pipe(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        if self._pump_thread is not None:
            self._pump_thread.join(10)  # the pipe is at its end once the process is gone
        self.output()
        self.process.stdout.close()

    def wait_for_readings(self, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Poll the API until the demo meter has ``count`` readings; return them."""
        deadline = time.monotonic() + timeout
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            response = httpx.get(f"{self.url}/api/meters/demo/readings", timeout=10)
            if response.status_code == 200:
                rows = response.json()["rows"]
                if len(rows) >= count:
                    return rows
            time.sleep(0.2)
        raise AssertionError(f"only {len(rows)} readings after {timeout} s: {self.output()}")

    def output(self) -> list[str]:
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return self.lines
            if line is not None:
                self.lines.append(line)

    def stop(self, timeout: float = 30.0, sig: signal.Signals = signal.SIGINT) -> int:
        """Ctrl-C (SIGINT, as a user would) or ``sig``; the exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill()
                raise AssertionError(f"demo did not stop on {sig.name}: {self.lines}") from None
        self._close_pipe()
        return self.process.returncode

    def __enter__(self) -> DemoProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process is not None and self.process.returncode is None:
            self.stop()

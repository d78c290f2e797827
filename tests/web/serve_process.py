"""``k382 serve`` run as a real subprocess, as a user runs it, stopped by Ctrl-C."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from collections.abc import Mapping

from kamstrup382.web.token import LEGACY_TOKEN_ENV, TOKEN_ENV

__all__ = ["start_serve", "stop"]


def start_serve(
    *args: str,
    env: Mapping[str, str] | None = None,
    before: list[str] | None = None,
    open_files: int | None = None,
) -> tuple[subprocess.Popen[str], str]:
    """Start ``k382 serve ARGS``; the process and the address it printed.

    ``env``: added to the environment (which has no token variable otherwise); ``before``
    receives the lines printed before the address (warnings); ``open_files``: the server's
    open-file limit (default: this process's).
    """

    def limit_files() -> None:
        if open_files is not None:
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, hard))

    environ = {**os.environ, "PYTHONUNBUFFERED": "1"}
    environ.pop(TOKEN_ENV, None)
    environ.pop(LEGACY_TOKEN_ENV, None)
    environ.update(env or {})
    process = subprocess.Popen(
        [sys.executable, "-m", "kamstrup382", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environ,
        preexec_fn=limit_files if open_files is not None else None,
    )
    assert process.stdout is not None
    early: list[str] = []
    for _ in range(10):
        line = process.stdout.readline()
        if line.startswith("Dashboard on "):
            if before is not None:
                before.extend(early)
            return process, line.split()[2].rstrip("/")
        early.append(line)
        if not line:
            break
    process.kill()
    rest = process.communicate()[0]
    raise AssertionError("".join(early) + rest)


def stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGINT)
    out = process.communicate(timeout=20)[0]
    assert "Traceback" not in out
    return process.returncode

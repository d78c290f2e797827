"""``k382 serve`` run as a real subprocess, as a user runs it, stopped by Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping

from kamstrup382.web.token import LEGACY_TOKEN_ENV, TOKEN_ENV

__all__ = ["start_serve", "stop"]

#: ``python -c LIMITED FILES ARGS...``: ``python -m kamstrup382 ARGS...`` with the
#: open-file limit (soft and hard) set to FILES.
LIMITED = (
    "import resource, runpy, sys\n"
    "files = int(sys.argv.pop(1))\n"
    "resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))\n"
    "runpy.run_module('kamstrup382', run_name='__main__', alter_sys=True)\n"
)


def start_serve(
    *args: str,
    env: Mapping[str, str] | None = None,
    before: list[str] | None = None,
    open_files: int | None = None,
) -> tuple[subprocess.Popen[str], str]:
    """Start ``k382 serve ARGS``; the process and the address it printed.

    ``env``: added to the environment (which has no token variable otherwise); ``before``
    receives the lines printed before the address (warnings); ``open_files``: the server's
    open-file limit, soft and hard (default: this process's).
    """
    command = [sys.executable, "-m", "kamstrup382"]
    if open_files is not None:  # the limit set by the child itself, before the CLI runs
        command = [sys.executable, "-c", LIMITED, str(open_files)]

    environ = {**os.environ, "PYTHONUNBUFFERED": "1"}
    environ.pop(TOKEN_ENV, None)
    environ.pop(LEGACY_TOKEN_ENV, None)
    environ.update(env or {})
    process = subprocess.Popen(
        [*command, "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environ,
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

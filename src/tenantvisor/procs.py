"""Facts about local processes from /proc, for the daemons tenantvisor starts and stops
itself (the embedded ovsdb-server, the testbed's Open vSwitch instances)."""

from __future__ import annotations

import os
import signal
import time


def pid_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie answers kill(0) but is gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cmdline(pid: int) -> str:
    """The command line of `pid`, arguments separated by spaces ("" if it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def stop_process(pid: int, first_wait: float = 0.0, grace: float = 5.0) -> bool:
    """Wait `first_wait` s for `pid` to end by itself, then SIGTERM, then SIGKILL, `grace` s
    each; whether it is gone."""
    for sig, wait in ((None, first_wait), (signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        if sig is not None:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return True
            time.sleep(0.01)
    return False

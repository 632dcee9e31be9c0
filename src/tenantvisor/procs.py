"""Facts about local processes from /proc, for the daemons tenantvisor starts and stops
itself (the embedded ovsdb-server, the testbed's Open vSwitch instances)."""

from __future__ import annotations

import os


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

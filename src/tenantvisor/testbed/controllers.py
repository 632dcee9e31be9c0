"""Tenant controllers we did not write, run as subprocesses for tests.

Why: the hypervisor must be proven against controllers it has no say in.  ``ovs-testcontroller``
is an L2 learning switch that speaks OpenFlow 1.0 or 1.3 and serves any number of switches;
it listens (``ptcp:PORT:127.0.0.1``) so the hypervisor, or a fabric directly, connects to it.
Its files (log, control socket) go to a run directory, never to ``/var/run/openvswitch``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (the kernel picks it).

    There is a small race until the caller binds it; tests accept it for the simplicity.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def tcp_listening(port: int, host: str = "127.0.0.1") -> bool:
    """True when something listens on ``host:port``, read from ``/proc/net/tcp``.

    Connecting to probe would open an OpenFlow session the controller logs and acts on; reading
    the socket table has no side effect.
    """
    want_ip = socket.inet_aton(host)[::-1].hex().upper() if host != "0.0.0.0" else "00000000"
    try:
        with open("/proc/net/tcp") as fh:
            lines = fh.read().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        local, state = fields[1], fields[3]
        ip, _, hexport = local.partition(":")
        if state == "0A" and int(hexport, 16) == port and ip in (want_ip, "00000000"):
            return True
    return False


class TestController:
    """``ovs-testcontroller -O <version> ptcp:PORT:HOST`` with its log in ``rundir``.

    ``version`` is an OVS protocol name (``OpenFlow13``, ``OpenFlow10``, or a comma list);
    ``extra_args`` go before the listen target (e.g. ``["--noflow"]``, ``["-N"]``).
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self,
        port: int,
        rundir: str | Path,
        *,
        version: str = "OpenFlow13",
        host: str = "127.0.0.1",
        extra_args: Sequence[str] = (),
        start_timeout: float = 10.0,
    ) -> None:
        self.port = port
        self.host = host
        self.rundir = Path(rundir)
        self.version = version
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        """Where a switch (or the hypervisor) should connect: ``tcp:HOST:PORT``."""
        return f"tcp:{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.rundir / f"testcontroller-{self.port}.log"

    @property
    def ctl_path(self) -> Path:
        return self.rundir / f"testcontroller-{self.port}.ctl"

    def start(self) -> TestController:
        """Start the controller and wait until it listens; raises with its log if it dies."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.rundir.mkdir(parents=True, exist_ok=True)
        d = str(self.rundir.resolve())
        env = {**os.environ, "OVS_RUNDIR": d, "OVS_LOGDIR": d, "OVS_DBDIR": d}
        cmd = [
            "ovs-testcontroller",
            "-O",
            self.version,
            f"--unixctl={self.ctl_path}",
            "-vconsole:off",
            f"--log-file={self.log_path}",
            *self.extra_args,
            f"ptcp:{self.port}:{self.host}",
        ]
        with open(self.rundir / f"testcontroller-{self.port}.out", "ab") as out:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env
            )
        deadline = time.monotonic() + self.start_timeout
        while not tcp_listening(self.port, self.host):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                status = self.proc.returncode if self.proc else None
                raise RuntimeError(
                    f"`{' '.join(cmd)}` did not start listening (exit status {status}):\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.02)
        return self

    def stop(self, grace: float = 3.0) -> None:
        """Terminate, wait, kill if needed; idempotent."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(grace)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        text = ""
        for p in (self.rundir / f"testcontroller-{self.port}.out", self.log_path):
            with contextlib.suppress(OSError):
                text += p.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> TestController:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


__all__ = ["TestController", "free_tcp_port", "tcp_listening"]

"""Run `tenantvisor serve` as a real process for the demo, e2e tests and benchmarks.

The daemon listens for pswitches on a Unix socket inside the fabric's OVS run directory
(Open vSwitch only connects to Unix sockets there), and for the API on a free loopback port.
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from tenantvisor.procs import cmdline, stop_process
from tenantvisor.testbed.controllers import free_tcp_port


class DaemonError(RuntimeError):
    pass


class RpcFailed(DaemonError):
    def __init__(self, method: str, error: dict[str, Any]) -> None:
        super().__init__(f"{method}: {error.get('message')} (code {error.get('code')})")
        self.error = error


class Daemon:
    def __init__(
        self,
        rundir: str | Path,
        of_listen: str,
        *,
        lldp_interval: float = 0.5,
        log_level: str = "info",
        extra_args: list[str] | None = None,
        admin_token: str | None = None,
        state_dir: str | Path | None = None,
    ) -> None:
        self.rundir = Path(rundir)
        self.of_listen = of_listen
        self.admin_token = admin_token or "admin-" + secrets.token_hex(8)
        # a private store per daemon (never the machine's default directory); give the same
        # directory to a second Daemon to restart "the same" hypervisor
        self.state_dir = Path(state_dir) if state_dir is not None else self.rundir / "state"
        self.lldp_interval = lldp_interval
        self.log_level = log_level
        self.extra_args = extra_args or []
        self.api_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.rundir / "tenantvisor.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self, timeout: float = 20.0) -> Daemon:
        self.rundir.mkdir(parents=True, exist_ok=True)
        self.api_port = free_tcp_port()
        cmd = [
            sys.executable, "-m", "tenantvisor.main", "serve",
            "--of-listen", self.of_listen,
            "--api-listen", f"127.0.0.1:{self.api_port}",
            "--lldp-interval", str(self.lldp_interval),
            "--log-level", self.log_level,
            "--state-dir", str(self.state_dir),
            *self.extra_args,
        ]  # fmt: skip
        env = dict(os.environ, TENANTVISOR_ADMIN_TOKEN=self.admin_token)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DaemonError(
                    f"tenantvisor exited ({self.proc.returncode}):\n{self.log_tail()}"
                )
            try:
                if self.get("/v1/status").status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise DaemonError(f"tenantvisor API not up after {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the daemon (which stops its embedded store); a store server a killed
        daemon left behind in its state directory is stopped too."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._stop_store_server()

    def _stop_store_server(self) -> None:
        pidfile = self.state_dir / "ovsdb-server.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        cmd = cmdline(pid)
        if "ovsdb-server" in cmd and str(self.state_dir) in cmd:
            stop_process(pid)

    def kill(self) -> None:
        """kill -9: no clean-up of any kind (what a crash does)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # --- API -----------------------------------------------------------------------------
    def _headers(self, token: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin_token}"}

    def get(self, path: str, token: str | None = None) -> httpx.Response:
        return httpx.get(self.url + path, headers=self._headers(token), timeout=10)

    def post(self, path: str, body: Any = None, token: str | None = None) -> httpx.Response:
        return httpx.post(self.url + path, json=body, headers=self._headers(token), timeout=10)

    def rest(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        r = httpx.request(
            method, self.url + path, json=body, headers=self._headers(token), timeout=10
        )
        if r.status_code >= 400:
            raise DaemonError(f"{method} {path}: HTTP {r.status_code}: {r.text}")
        return r.json() if r.content else None

    def rpc(self, endpoint: str, method: str, params: dict[str, Any], token: str) -> Any:
        """JSON-RPC the way ovxctl sends it: HTTP Basic with the token as the password."""
        basic = base64.b64encode(f"admin:{token}".encode()).decode()
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        r = httpx.post(
            f"{self.url}/{endpoint}",
            json=body,
            headers={"Authorization": f"Basic {basic}"},
            timeout=10,
        )
        data = r.json()
        if "error" in data:
            raise RpcFailed(method, data["error"])
        return data.get("result")

    def wait_for(self, what: str, pred: Any, timeout: float = 20.0) -> Any:
        """Poll /v1/status until pred(status) is truthy."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = self.get("/v1/status").json()
            if pred(last):
                return last
            if not self.alive:
                raise DaemonError(f"tenantvisor died waiting for {what}:\n{self.log_tail()}")
            time.sleep(0.1)
        raise DaemonError(f"timed out waiting for {what}; last status: {last}")

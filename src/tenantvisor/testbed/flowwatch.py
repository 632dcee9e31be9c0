"""Watch a pswitch's flow table from the switch's side: what changed, and how old rules are.

Why from the switch's side: "the hypervisor re-added nothing" must not rest on the
hypervisor's own counters alone.  Two independent witnesses, both measured here on OVS 3.1:

* :class:`FlowMonitor` runs ``ovs-ofctl monitor BRIDGE watch:!initial`` (the ONF flow monitor
  extension, works on an OpenFlow 1.3 bridge) and records every ``event=ADDED``,
  ``DELETED`` and ``MODIFIED``.  An identical re-ADD is reported as ``ADDED``; a MODIFY that
  changes nothing is not reported at all (it changes nothing).
* :func:`dump_flows` parses ``dump-flows`` with each rule's ``duration``.  An identical ADD
  restarts a rule's duration in OVS, so a rule whose duration after an event is smaller than
  before was re-added (or deleted and added again).

Both use the bridge's management socket (a service connection): they are no controller, so
Open vSwitch sends them no PACKET_IN and their presence changes nothing in fail-secure mode.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass

from tenantvisor.testbed.fabric import Fabric

_DURATION = re.compile(r"duration=([\d.]+)s")
_COUNTERS = re.compile(r"\b(duration|n_packets|n_bytes|idle_age|hard_age)=[^,\s]+,?\s*")


@dataclass(frozen=True)
class FlowEntry:
    key: str  # cookie, table, priority, match and actions: what identifies the rule as installed
    duration: float


def dump_flows(fab: Fabric, switch: str) -> dict[str, FlowEntry]:
    """Every rule of ``switch`` by its key (counters and ages removed)."""
    out: dict[str, FlowEntry] = {}
    for line in fab.ofctl(switch, "dump-flows").splitlines():
        m = _DURATION.search(line)
        if m is None:
            continue
        key = _COUNTERS.sub("", line).strip()
        out[key] = FlowEntry(key, float(m.group(1)))
    return out


def younger(before: dict[str, FlowEntry], after: dict[str, FlowEntry], elapsed: float) -> list[str]:
    """Rules present before whose age did not grow by most of ``elapsed`` seconds (re-added),
    or that are gone; ``elapsed`` is the time between the two dumps."""
    bad = []
    for key, entry in before.items():
        now = after.get(key)
        if now is None:
            bad.append(f"gone: {key}")
        elif now.duration < entry.duration + 0.5 * elapsed:
            bad.append(f"re-added ({entry.duration:.3f}s -> {now.duration:.3f}s): {key}")
    return bad


class FlowMonitor:
    """``ovs-ofctl monitor`` on one bridge; :attr:`events` holds ``(time, line)`` pairs."""

    def __init__(self, fab: Fabric, switch: str) -> None:
        assert fab.ovs is not None, "build the fabric first"
        self.fab = fab
        self.switch = switch
        version = fab.protocols.get(switch, fab.default_protocols).split(",")[0]
        # stdbuf: ovs-ofctl block-buffers a pipe; events must arrive when they happen
        cmd = ["stdbuf", "-oL", "ovs-ofctl", "-O", version, "monitor", fab.bridge(switch)]
        cmd.append("watch:!initial")
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            # Measured: with stderr on /dev/null, ovs-ofctl 3.1 prints the monitor's first
            # reply and then no event at all; merged into stdout, every event arrives.
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env={**os.environ, **fab.ovs.env},
        )
        self.events: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        if not self._ready.wait(5.0):
            self.close()
            raise RuntimeError(f"ovs-ofctl monitor on {fab.bridge(switch)} did not start")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if "FLOW_MONITOR reply" in line:
                self._ready.set()  # the first reply acknowledges the request
            elif "event=" in line:
                with self._lock:
                    self.events.append((time.time(), line.strip()))
        self._ready.set()

    def since(self, t: float) -> list[str]:
        with self._lock:
            return [line for when, line in self.events if when >= t]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(3)
        self._thread.join(3)

    def __enter__(self) -> FlowMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["FlowEntry", "FlowMonitor", "dump_flows", "younger"]

"""The provider's OpenFlow rules on node bridges: pushed, removed and re-asserted by cookie.

How: ``ovs-ofctl`` over the bridge's management socket (``<rundir>/<bridge>.mgmt``), one
``--bundle add-flows`` per bridge and step, so a bridge gets all of a step's adds and deletes
atomically (OpenFlow 1.4 bundle).  Why not tenantvisor as a controller on every bridge: a
second controller connection per bridge (hundreds with many networks) would be one more thing
to keep alive, the tenant's controller would share the bridge's controller list with us, and
OVS would send us every PACKET_IN of the tenant's traffic.  The management socket is always
there, needs no listener and carries nothing we did not ask for.

Re-assertion: every provider rule carries a cookie ``0x7476 << 48 | hash(rule)``.  Only a
tenant controller can remove provider rules (nothing else writes OpenFlow to these bridges),
so the manager periodically dumps the provider cookies of bridges that have a tenant
controller and re-adds the missing rules (``reassert``).  A tenant's own rules (other
cookies) are never touched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from tenantvisor.dedicated.planner import PROVIDER_COOKIE, PROVIDER_COOKIE_MASK, FlowSpec
from tenantvisor.testbed.netns import CommandError, run

_COOKIE_RE = re.compile(r"cookie=(0x[0-9a-f]+)")


class FlowError(RuntimeError):
    """ovs-ofctl refused a rule or could not reach the bridge."""


class OfctlFlows:
    """Provider rules on one node's bridges, through their management sockets in ``rundir``."""

    def __init__(self, rundir: str, timeout: float = 10.0) -> None:
        self.rundir = rundir
        self.timeout = timeout

    @property
    def env(self) -> dict[str, str]:
        return {"OVS_RUNDIR": self.rundir, "OVS_LOGDIR": self.rundir, "OVS_DBDIR": self.rundir}

    def target(self, bridge: str) -> str:
        return f"unix:{Path(self.rundir) / (bridge + '.mgmt')}"

    def apply(
        self,
        bridge: str,
        add: Iterable[FlowSpec],
        delete: Iterable[FlowSpec],
        delete_cookies: Iterable[int] = (),
    ) -> None:
        """Delete (rules, or provider rules by cookie) then add, in one bundle (atomic on the
        bridge)."""
        cookies = {f.cookie for f in delete} | set(delete_cookies)
        lines = [f"delete cookie={c:#x}/-1" for c in sorted(cookies)]
        lines += ["add " + f.line() for f in sorted(add, key=lambda f: (f.priority, f.match))]
        if not lines:
            return
        cmd = ["ovs-ofctl", "-O", "OpenFlow14", "--bundle", "add-flows", self.target(bridge), "-"]
        try:
            run(cmd, env=self.env, timeout=self.timeout, input="\n".join(lines) + "\n")
        except CommandError as exc:
            raise FlowError(f"{bridge}: {exc.stderr.strip() or exc}") from None

    def cookies(self, bridge: str) -> set[int]:
        """Cookies of the provider rules the bridge holds now."""
        spec = f"cookie={PROVIDER_COOKIE:#x}/{PROVIDER_COOKIE_MASK:#x}"
        cmd = ["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", self.target(bridge), spec]
        try:
            out = run(cmd, env=self.env, timeout=self.timeout).stdout
        except CommandError as exc:
            raise FlowError(f"{bridge}: {exc.stderr.strip() or exc}") from None
        return {int(m.group(1), 16) for m in _COOKIE_RE.finditer(out)}

    def dump(self, bridge: str) -> str:
        """Every rule on the bridge (the tenant's too), for tests and operators."""
        cmd = ["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", self.target(bridge)]
        return run(cmd, env=self.env, timeout=self.timeout).stdout

    def reassert(self, bridge: str, wanted: set[FlowSpec]) -> int:
        """Re-add the rules of ``wanted`` whose cookie is missing; returns how many."""
        have = self.cookies(bridge)
        missing = {f for f in wanted if f.cookie not in have}
        self.apply(bridge, missing, ())
        return len(missing)


__all__ = ["FlowError", "OfctlFlows"]

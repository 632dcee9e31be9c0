"""Thin, checked wrappers over ``ip``, ``ethtool`` and ``sysctl`` for building test networks.

Why a module of its own: the test bed creates dozens of namespaces and veths, and a failure half
way through must say exactly which command failed and what the kernel said, or nobody can tell
a typo from a name clash with another process on the same machine.  So every call here runs with
a timeout and raises :class:`CommandError` naming the command, its exit status and its stderr.

Everything takes an optional ``netns``: ``None`` means the namespace this process runs in (the
root namespace in tests); a name means ``ip -n NAME`` / ``ip netns exec NAME``.  Nothing here
ever deletes an object it was not named explicitly: callers track what they created.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import Any

DEFAULT_TIMEOUT = 10.0
"""Seconds any single ``ip``/``ethtool``/``sysctl`` call may take; they normally take ~3 ms."""

IFNAMSIZ = 15
"""Longest Linux interface name (IFNAMSIZ - 1)."""


class CommandError(RuntimeError):
    """An external command failed or timed out; carries the command line and its stderr."""

    def __init__(
        self,
        cmd: Sequence[str],
        returncode: int | None,
        stdout: str = "",
        stderr: str = "",
        reason: str = "",
    ) -> None:
        self.cmd = list(cmd)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        what = reason or f"exited with status {returncode}"
        detail = stderr.strip() or stdout.strip() or "(no output)"
        super().__init__(f"`{' '.join(self.cmd)}` {what}: {detail}")


def run(
    cmd: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` (no shell), capture text output, and raise :class:`CommandError` on failure.

    A timeout is always set: a hung ``ip netns exec`` or ``ovs-vsctl`` waiting for a dead daemon
    must fail the test, not the CI run's 90-minute budget.
    """
    args = [str(a) for a in cmd]
    full_env = None if env is None else {**os.environ, **env}
    try:
        proc = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            input=input,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandError(
            args,
            None,
            _text(exc.stdout),
            _text(exc.stderr),
            reason=f"timed out after {timeout:g} s",
        ) from exc
    except FileNotFoundError as exc:
        raise CommandError(args, None, reason="could not be started", stderr=str(exc)) from exc
    if check and proc.returncode != 0:
        raise CommandError(args, proc.returncode, proc.stdout, proc.stderr)
    return proc


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def _ip(netns: str | None) -> list[str]:
    """``ip`` argv prefix for a namespace; ``ip -n`` avoids the cost of ``ip netns exec``."""
    return ["ip"] if netns is None else ["ip", "-n", netns]


def check_ifname(name: str) -> str:
    """Return ``name`` if the kernel will accept it as an interface name, else raise ValueError."""
    if not name or len(name) > IFNAMSIZ or "/" in name or any(c.isspace() for c in name):
        raise ValueError(f"invalid interface name {name!r} (1..{IFNAMSIZ} chars, no '/' or space)")
    return name


# --- namespaces ----------------------------------------------------------------------------------
def list_netns() -> list[str]:
    """Names of the named network namespaces (``ip netns list``)."""
    out = run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def netns_exists(name: str) -> bool:
    """True when a named namespace ``name`` exists."""
    return os.path.exists(f"/run/netns/{name}") or name in list_netns()


def add_netns(name: str) -> None:
    """Create a named network namespace and bring its loopback up (ping to self needs it)."""
    run(["ip", "netns", "add", name])
    run(["ip", "-n", name, "link", "set", "lo", "up"])


def delete_netns(name: str, *, missing_ok: bool = True) -> None:
    """Delete a named namespace.

    The kernel tears the namespace down asynchronously: veths inside it (and their peers
    elsewhere) disappear a little later, see :func:`wait_links_gone`.
    """
    if missing_ok and not netns_exists(name):
        return
    run(["ip", "netns", "delete", name])


def ns_exec(
    netns: str,
    cmd: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` inside ``netns`` (``ip netns exec``) with a timeout."""
    return run(["ip", "netns", "exec", netns, *cmd], timeout=timeout, check=check, input=input)


def ns_popen(netns: str, cmd: Sequence[str], **kwargs: Any) -> subprocess.Popen[str]:
    """Start ``cmd`` inside ``netns`` without waiting (servers such as ``iperf3 -s``).

    The caller owns the process and must terminate it; output defaults to text mode.
    """
    kwargs.setdefault("text", True)
    return subprocess.Popen(["ip", "netns", "exec", netns, *cmd], **kwargs)


# --- links -------------------------------------------------------------------------------------
def list_links(netns: str | None = None) -> list[str]:
    """Interface names in a namespace (without the ``@peer`` suffix ``ip`` prints)."""
    out = run([*_ip(netns), "-o", "link", "show"]).stdout
    names = []
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@")[0])
    return names


def link_exists(ifname: str, netns: str | None = None) -> bool:
    """True when ``ifname`` exists in ``netns`` (``None``: this process's namespace)."""
    proc = run([*_ip(netns), "link", "show", "dev", ifname], check=False)
    return proc.returncode == 0


def add_veth(
    name: str,
    peer: str,
    *,
    mtu: int | None = None,
    netns: str | None = None,
    peer_netns: str | None = None,
    tx_offload_off: bool = True,
) -> None:
    """Create the veth pair ``name`` (in ``netns``) <-> ``peer`` (in ``peer_netns``, default the
    same namespace), both with ``mtu``, and turn TX checksum offload off on both ends.

    The peer is created directly in its namespace under its final name (a host's ``eth0``):
    moving a device between namespaces afterwards costs ~20 ms each (RCU synchronisation),
    which dominates building a 20-switch fabric.  Offload must be off on every veth carrying
    traffic through the OVS userspace datapath, or TCP stalls on bad checksums.  Both ends are
    left *down*: callers set addresses first and bring links up last.
    """
    check_ifname(name)
    check_ifname(peer)
    cmd = [*_ip(netns), "link", "add", name]
    if mtu is not None:
        cmd += ["mtu", str(mtu)]
    cmd += ["type", "veth", "peer", "name", peer]
    if mtu is not None:
        cmd += ["mtu", str(mtu)]
    if peer_netns is not None and peer_netns != netns:
        cmd += ["netns", peer_netns]
    else:
        peer_netns = netns
    run(cmd)
    if tx_offload_off:
        set_tx_offload(name, False, netns=netns)
        set_tx_offload(peer, False, netns=peer_netns)


def move_link(
    ifname: str,
    to_netns: str | None,
    *,
    netns: str | None = None,
    rename: str | None = None,
) -> None:
    """Move ``ifname`` from ``netns`` into ``to_netns`` and/or rename it (``eth0``), in one
    ``ip`` call.  ``to_netns=None`` only renames.  A device keeps its MTU and offload settings
    but arrives *down*.  Moving to the root namespace by name is not supported
    (the root namespace has no name); the test bed never needs it.
    """
    cmd = [*_ip(netns), "link", "set", "dev", ifname]
    if to_netns is not None:
        cmd += ["netns", to_netns]
    if rename is not None:
        cmd += ["name", check_ifname(rename)]
    run(cmd)


def delete_link(ifname: str, netns: str | None = None, *, missing_ok: bool = True) -> bool:
    """Delete ``ifname`` (for a veth, both ends go).  Returns whether something was deleted."""
    if missing_ok and not link_exists(ifname, netns):
        return False
    run([*_ip(netns), "link", "delete", "dev", ifname])
    return True


def set_mac(ifname: str, mac: str, netns: str | None = None) -> None:
    """Set the Ethernet address of ``ifname``."""
    run([*_ip(netns), "link", "set", "dev", ifname, "address", mac])


def set_ipv4(ifname: str, cidr: str, netns: str | None = None) -> None:
    """Add the IPv4 address ``cidr`` (``10.0.0.1/8``) to ``ifname``."""
    run([*_ip(netns), "addr", "add", cidr, "dev", ifname])


def set_mtu(ifname: str, mtu: int, netns: str | None = None) -> None:
    """Set the MTU of ``ifname``."""
    run([*_ip(netns), "link", "set", "dev", ifname, "mtu", str(mtu)])


def set_up(ifname: str, netns: str | None = None) -> None:
    """Bring ``ifname`` administratively up."""
    run([*_ip(netns), "link", "set", "dev", ifname, "up"])


def set_down(ifname: str, netns: str | None = None) -> None:
    """Bring ``ifname`` administratively down (a veth end down takes its peer's carrier too)."""
    run([*_ip(netns), "link", "set", "dev", ifname, "down"])


def ip_batch(script: str, netns: str | None = None) -> None:
    """Several ``ip`` commands (one per line, without the ``ip``) in one process: they take
    effect within a millisecond of each other."""
    run([*_ip(netns), "-batch", "-"], input=script)


def set_links_state(names: Sequence[str], up: bool, netns: str | None = None) -> None:
    """Bring several interfaces up or down with one ``ip -batch`` process, so they change
    within a millisecond of each other (two ``ip`` calls are ~5 ms apart)."""
    if not names:
        return
    state = "up" if up else "down"
    ip_batch("".join(f"link set dev {check_ifname(n)} {state}\n" for n in names), netns)


def set_tx_offload(ifname: str, on: bool, netns: str | None = None) -> None:
    """Switch TX checksum offload (``ethtool -K IF tx on|off``).

    Must be off on every veth that carries traffic through the userspace datapath: the kernel
    otherwise hands OVS packets with partial checksums, which OVS forwards unfixed and the
    receiving TCP drops.
    """
    cmd = ["ethtool", "-K", ifname, "tx", "on" if on else "off"]
    if netns is None:
        run(cmd)
    else:
        ns_exec(netns, cmd)


def disable_ipv6_netns(netns: str) -> None:
    """Turn IPv6 off for every current and future interface of ``netns``.

    Router solicitations, MLD reports and DAD probes would otherwise show up in flow counters,
    PACKET_INs and traces as traffic no test sent.  ``default`` covers interfaces moved in later.
    """
    ns_exec(
        netns,
        [
            "sysctl",
            "-q",
            "-w",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ],
    )


def disable_ipv6_link(ifname: str, netns: str | None = None) -> None:
    """Turn IPv6 off on one interface (root-namespace veth ends, where ``all`` is not ours)."""
    key = f"net.ipv6.conf.{ifname.replace('.', '/')}.disable_ipv6=1"
    if not os.path.isdir("/proc/sys/net/ipv6"):
        return  # kernel without IPv6: nothing to silence
    cmd = ["sysctl", "-q", "-w", key]
    if netns is None:
        run(cmd)
    else:
        ns_exec(netns, cmd)


def wait_links_gone(names: Sequence[str], netns: str | None = None, timeout: float = 5.0) -> None:
    """Wait until none of ``names`` exists any more (namespace teardown is asynchronous)."""
    deadline = time.monotonic() + timeout
    left = set(names)
    while left:
        left &= set(list_links(netns))
        if not left:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"interfaces still present after {timeout:g} s: {sorted(left)}")
        time.sleep(0.05)

"""Intent and tenant state with every kind of object, shared by the store's tests."""

from __future__ import annotations

import copy
import ipaddress
import json
from pathlib import Path

from tenantvisor.dedicated.model import Intent, Mode, Network, Node, PortKind, TenantPort, VmBinding
from tenantvisor.mapping.paths import Hop
from tenantvisor.store import codec
from tenantvisor.store.records import FlowRecord, GroupRecord, MeterRecord
from tenantvisor.virtual.model import (
    Host,
    Limits,
    ManualPath,
    Route,
    VirtualNetwork,
    VLink,
    VLinkEnd,
    VPort,
    VPortKind,
    VSwitch,
)

TOP = 1 << 63  # dpids and cookies with the top bit set: beyond OVSDB's signed integers
HASH = "9f" * 32  # a sha256 in hex


def big_network(
    nid: int = 7, tenant: int = 3, n_switches: int = 3, base_index: int = 1
) -> VirtualNetwork:
    """A network with a big switch (three pswitches, manual routes), plain vswitches, edge
    and link vports, spf and manual vlinks (with paths), hosts and per-vswitch controllers."""
    net = VirtualNetwork(
        nid,
        tenant,
        ["tcp:10.0.0.1:6653", "ptcp:6634", "tcp:10.0.0.1:6653"],
        "10.1.0.0",
        16,
        "exact",
        True,
    )
    net.limits = Limits(vport_pps=2000, vlink_pps=0, vlink_kbps=0xFFFFFFFF)  # vport_kbps unset
    d = [TOP | 0xA1, TOP | 0xA2, TOP | 0xA3, 0x1, 0xFFFFFFFFFFFFFFFF]
    big = VSwitch((nid << 48) | 1, [d[2], d[0], d[1]], base_index, routing="manual", backup_num=2)
    big.ports[1] = VPort(1, d[2], 1, VPortKind.EDGE)
    big.ports[2] = VPort(2, d[1], 4, VPortKind.EDGE)
    big.ports[4095] = VPort(4095, d[0], 0xFFFFFEFF, VPortKind.LINK, link_id=1)
    big.ports[3] = VPort(3, d[2], 6, VPortKind.EDGE, exclusive=True)
    big.routes[1] = Route(1, 1, 2, ManualPath(((d[2], 2, d[0], 3), (d[0], 4, d[1], 1)), 100))
    big.routes[2] = Route(2, 2, 1, ManualPath(((d[1], 1, d[0], 4), (d[0], 3, d[2], 2)), 0))
    net.switches[big.vdpid] = big
    prev = big
    for i in range(1, n_switches):
        sw = VSwitch(
            (nid << 48) | (i + 1),
            [d[3] + i if i < n_switches - 1 else d[4]],
            base_index + i,
            controller_urls=[] if i == 1 else [f"ptcp:{7000 + i}", "tcp:127.0.0.1:6653"],
        )
        sw.ports[1] = VPort(1, sw.dpids[0], 2, VPortKind.LINK, link_id=i)
        sw.ports[2] = VPort(2, sw.dpids[0], 3, VPortKind.EDGE)
        sw.ports[3] = VPort(
            3, sw.dpids[0], 5, VPortKind.LINK, link_id=i + 1 if i + 1 < n_switches else None
        )
        net.switches[sw.vdpid] = sw
        src_port = 4095 if prev is big else 3
        lk = VLink(i, VLinkEnd(prev.vdpid, src_port), VLinkEnd(sw.vdpid, 1))
        if i % 2:
            lk.algorithm = "manual"
            lk.paths = [
                ManualPath(((prev.dpids[0], 7, sw.dpids[0], 2),), 65535),
                ManualPath(((prev.dpids[0], 8, d[3], 1), (d[3], 2, sw.dpids[0], 2)), 3),
            ]
        else:
            lk.backup_num = 8
        net.links[i] = lk
        net.hosts[i] = Host(i, sw.vdpid, 2, f"02:00:00:00:{i >> 8:02x}:{i & 0xFF:02x}")
        prev = sw
    net.hosts[1000] = Host(1000, big.vdpid, 1, "0a:bb:cc:dd:ee:ff")
    return net


def small_network(nid: int, tenant: int, index: int) -> VirtualNetwork:
    net = VirtualNetwork(nid, tenant, [])
    sw = VSwitch((nid << 48) | 1, [0x10 + nid], index)
    sw.ports[1] = VPort(1, 0x10 + nid, 1, VPortKind.EDGE)
    net.switches[sw.vdpid] = sw
    net.hosts[1] = Host(1, sw.vdpid, 1, "02:00:00:00:00:01")
    return net


def flows(nid: int, vdpid: int, n: int, start: int = 1) -> list[FlowRecord]:
    out = []
    for s in range(start, start + n):
        match = bytes.fromhex("80000606") + bytes([2, 0, 0, 0, s >> 8 & 0xFF, s & 0xFF])  # eth_dst
        ins = bytes.fromhex("0004001800000000") + bytes.fromhex("0000001000000001ffe5000000000000")
        out.append(
            FlowRecord(
                nid, vdpid, s, s % 3, s % 65536, match, ins, TOP | s if s % 2 else s, s % 100, 0, 1
            )
        )
    return out


def groups(nid: int, vdpid: int) -> list[GroupRecord]:
    return [
        GroupRecord(nid, vdpid, 1, 0, bytes.fromhex("00100000ffffffffffffffff00000000"), 17),
        GroupRecord(nid, vdpid, 0xFFFFFF00, 3, b"", 18),
    ]


def meters(nid: int, vdpid: int) -> list[MeterRecord]:
    bands = bytes.fromhex("00010010000000640000000000000000")  # one drop band, 100 kb/s
    return [MeterRecord(nid, vdpid, 1, 0b101, bands, 4)]


def dnb_intent() -> Intent:
    out = Intent()
    for i, name in enumerate(("n1", "node-2"), 1):
        out.nodes[name] = Node(
            name,
            i,
            f"unix:/run/tv/{name}/db.sock",
            ipaddress.IPv4Interface(f"192.168.7.{i}/24"),
            "eth1",
            netns=f"ns{i}" if i == 1 else None,
            rundir=f"/run/tv/{name}" if i == 1 else None,
        )
    out.networks["red"] = Network(
        "red", 3, Mode.DEDICATED, 0xFFFFFFFF, 4094, ipaddress.IPv4Network("10.124.1.0/24"), 65535,
        "tcp:10.0.0.9:6653",
    )  # fmt: skip
    out.networks["blue"] = Network(
        "blue", 4, Mode.COMMON, 1001, 1, ipaddress.IPv4Network("10.124.2.0/24"), 1
    )
    out.vms[("red", "02:00:00:00:00:01")] = VmBinding(
        "red", "n1", "02:00:00:00:00:01", ipaddress.IPv4Interface("10.0.0.1/24"), "tap1"
    )
    out.vms[("blue", "02:00:00:00:00:01")] = VmBinding(
        "blue", "node-2", "02:00:00:00:00:01", ipaddress.IPv4Interface("10.0.0.1/24"), "tap2"
    )
    out.tenant_ports[("n1", "gre-x")] = TenantPort(
        "red", "n1", "gre-x", PortKind.GRE, ipaddress.IPv4Address("10.124.1.2"), 0xFFFFFFFF
    )
    out.tenant_ports[("n1", "int0")] = TenantPort("red", "n1", "int0", PortKind.INTERNAL)
    return out


def allocations(nid: int) -> list[tuple[tuple[object, ...], object, int]]:
    """Ids of network `nid` (distinct from every other network's) and a tenant group's."""
    path = (Hop(TOP | 1, 2, TOP | 2, 3), Hop(TOP | 2, 4, 5, 1))
    return [
        (("tag", TOP | 2, 3), (nid, "vlink", 1, 0, path, 0), nid),
        (("tag", 5, 1), (nid, "vlink", 1, 0, path, 1), 4094 - nid),
        (("group", TOP | 1), (nid, "ff", "vlink", 1, 0, 0), 0xFFFFFF00 - nid),
        (("marker", 0x10), (nid, (nid << 48) | 1, 2, 1), 100 + nid),
        (("group", TOP | 1), ("tenant", 12), 3),
    ]


def schema_1_1(tmp: Path) -> Path:
    """The schema as release 1.1.0 had it: Vport without its `exclusive` column (and
    Virtual_Network without the 1.3 `limits`, Tenant without the 1.4 `limits`)."""
    s = copy.deepcopy(codec.schema())
    s["version"] = "1.1.0"
    del s["tables"]["Vport"]["columns"]["exclusive"]
    del s["tables"]["Virtual_Network"]["columns"]["limits"]
    del s["tables"]["Tenant"]["columns"]["limits"]
    path = tmp / "tenantvisor-1.1.0.ovsschema"
    path.write_text(json.dumps(s))
    return path


def schema_1_2(tmp: Path) -> Path:
    """The schema as release 1.2.0 had it: Virtual_Network without its `limits` column (and
    Tenant without the 1.4 `limits`)."""
    s = copy.deepcopy(codec.schema())
    s["version"] = "1.2.0"
    del s["tables"]["Virtual_Network"]["columns"]["limits"]
    del s["tables"]["Tenant"]["columns"]["limits"]
    path = tmp / "tenantvisor-1.2.0.ovsschema"
    path.write_text(json.dumps(s))
    return path


def schema_1_3(tmp: Path) -> Path:
    """The schema as release 1.3.0 had it: Tenant without its `limits` column."""
    s = copy.deepcopy(codec.schema())
    s["version"] = "1.3.0"
    del s["tables"]["Tenant"]["columns"]["limits"]
    path = tmp / "tenantvisor-1.3.0.ovsschema"
    path.write_text(json.dumps(s))
    return path


def old_schema(tmp: Path, version: str = "0.9.0") -> Path:
    """The shipped schema as an older release had it: no backup_num columns, no
    Instance/Ownership tables."""
    s = copy.deepcopy(codec.schema())
    s["version"] = version
    del s["tables"]["Vswitch"]["columns"]["backup_num"]
    del s["tables"]["Vlink"]["columns"]["backup_num"]
    del s["tables"]["Instance"], s["tables"]["Ownership"]
    path = tmp / f"tenantvisor-{version}.ovsschema"
    path.write_text(json.dumps(s))
    return path

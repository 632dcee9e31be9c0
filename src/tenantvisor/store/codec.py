"""Intent and tenant state <-> rows of `tenantvisor.ovsschema`.  Pure: no I/O but reading the
schema file shipped next to this module.

A *row* here is a dict of column -> Python value in one canonical form: integers, strings
and booleans as themselves, an optional column as its value or None, a map as a dict.  The
store turns rows into OVSDB JSON (`to_json`) and IDL rows back into rows (`from_idl`).

Choices, written down once:

* 64-bit values (dpids, vdpids, cookies) are **16 lower-case hex digits**, never OVSDB
  integers: those are signed 64-bit, so half of the dpid space (and every cookie with the
  top bit set) would need a sign trick that makes dumps and `where` clauses lie.  Open
  vSwitch itself keeps `Bridge:datapath_id` as such a string.  The schema pins the length.
* Byte strings (OXM matches, instructions, group buckets, meter bands) are hex strings.
* Lists whose order means something (a big switch's pswitches, controller URLs, the hops of
  a path) are maps position -> value: OVSDB sets are unordered.
* A hop is ``SRCDPID/SRCPORT-DSTDPID/DSTPORT`` with both dpids in the 16-digit form.
* Allocation spaces and owners (nested tuples of ints, strs and `Hop`) are canonical JSON:
  tuples as arrays, a `Hop` as ``{"hop": [src_dpid, src_port, dst_dpid, dst_port]}``, no
  spaces.  Decoding gives objects equal to (and hashing like) the originals, which is what
  `IdAllocator` keys on; equal objects always encode to the same string, which is what
  the schema's (space, owner) and (space, id) indexes compare.
* Tokens are never stored: a tenant row holds the sha256 of its token, hex.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from tenantvisor.dedicated.model import (
    Intent,
    Mode,
    Network,
    Node,
    PortKind,
    TenantPort,
    VmBinding,
)
from tenantvisor.mapping.alloc import owner_network
from tenantvisor.mapping.paths import Hop
from tenantvisor.store.records import FlowRecord, GroupRecord, MeterRecord
from tenantvisor.virtual.model import (
    Host,
    Limits,
    ManualPath,
    PathHops,
    Route,
    Tenant,
    VirtualNetwork,
    VLink,
    VLinkEnd,
    VPort,
    VPortKind,
    VSwitch,
)

SCHEMA_PATH = Path(__file__).with_name("tenantvisor.ovsschema")
DB_NAME = "Tenantvisor"

Row = dict[str, Any]
Key = tuple[Any, ...]

# --- tables: the columns that identify a row, and the column naming its network ----------
KEYS: dict[str, tuple[str, ...]] = {
    "Tenant": ("id",),
    "Virtual_Network": ("id",),
    "Vswitch": ("network", "vdpid"),
    "Vport": ("network", "vdpid", "number"),
    "Vlink": ("network", "id"),
    "Vlink_Path": ("network", "link", "priority"),
    "Host": ("network", "id"),
    "Route": ("network", "vdpid", "id"),
    "Counters": (),
    "Allocation": ("space", "owner"),
    "Tenant_Flow": ("network", "vdpid", "serial"),
    "Tenant_Group": ("network", "vdpid", "group_id"),
    "Tenant_Meter": ("network", "vdpid", "meter_id"),
    "Dnb_Node": ("name",),
    "Dnb_Network": ("id",),
    "Dnb_Vm": ("network", "mac"),
    "Dnb_Tenant_Port": ("node", "name"),
    "Instance": ("id",),
    "Ownership": ("network",),
}
"""Every table's identifying columns (each is one of the schema's unique indexes)."""

NET_COLUMN: dict[str, str] = {
    "Virtual_Network": "id",
    "Vswitch": "network",
    "Vport": "network",
    "Vlink": "network",
    "Vlink_Path": "network",
    "Host": "network",
    "Route": "network",
    "Allocation": "network",
    "Tenant_Flow": "network",
    "Tenant_Group": "network",
    "Tenant_Meter": "network",
    "Ownership": "network",
    "Dnb_Network": "id",
    "Dnb_Vm": "network",
    "Dnb_Tenant_Port": "network",
}
"""The column naming the (virtual or DNB) network a row belongs to."""

NETWORK_TABLES = ("Vswitch", "Vport", "Vlink", "Vlink_Path", "Host", "Route")
"""A virtual network's subtree, below its Virtual_Network row (what `put_network` replaces)."""
TENANT_STATE_TABLES = ("Tenant_Flow", "Tenant_Group", "Tenant_Meter")
"""What tenants installed in their vswitches, per (network, vdpid)."""
DNB_TABLES = ("Dnb_Node", "Dnb_Network", "Dnb_Vm", "Dnb_Tenant_Port")
COUNTERS = ("tenant", "network", "link", "host", "route")
"""The manager's id counters (the next id of each kind), the columns of `Counters`."""


# --- the schema's column kinds ------------------------------------------------------------
def _kind(coltype: Any) -> str:
    if isinstance(coltype, str):
        return "scalar"
    if "value" in coltype:
        return "map"
    lo, hi = coltype.get("min", 1), coltype.get("max", 1)
    if (lo, hi) == (1, 1):
        return "scalar"
    if (lo, hi) == (0, 1):
        return "optional"
    return "set"


@cache
def schema() -> dict[str, Any]:
    """The shipped schema, parsed."""
    with SCHEMA_PATH.open() as fh:
        data: dict[str, Any] = json.load(fh)
    return data


@cache
def column_kinds() -> dict[str, dict[str, str]]:
    """table -> column -> "scalar" | "optional" | "map" | "set"."""
    return {
        t: {c: _kind(spec["type"]) for c, spec in tdef["columns"].items()}
        for t, tdef in schema()["tables"].items()
    }


def schema_version(text: str | None = None) -> tuple[int, int, int]:
    """A version "x.y.z" as a tuple (the shipped schema's when `text` is None)."""
    v = schema()["version"] if text is None else text
    major, minor, patch = (int(p) for p in v.split("."))
    return major, minor, patch


def to_json(table: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """A row (or some of its columns) in OVSDB's JSON notation, for an insert or update."""
    kinds = column_kinds()[table]
    out: dict[str, Any] = {}
    for col, v in row.items():
        k = kinds[col]
        if k == "scalar":
            out[col] = v
        elif k == "optional":
            out[col] = ["set", []] if v is None else v
        elif k == "map":
            out[col] = ["map", [[a, b] for a, b in sorted(v.items())]]
        else:
            out[col] = ["set", sorted(v)]
    return out


def from_idl(table: str, values: Mapping[str, Any]) -> Row:
    """A row from the Python values the `ovs` IDL gives for its columns (an optional column
    is a list of zero or one element there)."""
    kinds = column_kinds()[table]
    out: Row = {}
    for col, v in values.items():
        k = kinds.get(col)
        if k == "optional":
            out[col] = v[0] if v else None
        elif k == "map":
            out[col] = dict(v)
        elif k == "set":
            out[col] = sorted(v)
        else:
            out[col] = v
    return out


def from_json(table: str, values: Mapping[str, Any]) -> Row:
    """A row from OVSDB's JSON notation (a `select` result); columns not in the schema
    (``_uuid``, ``_version``) are left out."""
    kinds = column_kinds()[table]
    out: Row = {}
    for col, v in values.items():
        k = kinds.get(col)
        if k is None:
            continue
        if k == "map":
            out[col] = {a: b for a, b in v[1]}
        elif k in ("optional", "set") and isinstance(v, list) and v and v[0] == "set":
            out[col] = (v[1][0] if v[1] else None) if k == "optional" else sorted(v[1])
        elif k == "set":
            out[col] = [v]
        else:
            out[col] = v
    return out


def key(table: str, row: Mapping[str, Any]) -> Key:
    return tuple(row[c] for c in KEYS[table])


# --- scalars -------------------------------------------------------------------------------
_HEX16 = re.compile(r"[0-9a-f]{16}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def hex64(value: int) -> str:
    """A 64-bit unsigned value (dpid, cookie) as 16 lower-case hex digits."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
        raise ValueError(f"{value!r} is not a 64-bit unsigned integer")
    return f"{value:016x}"


def unhex64(text: str) -> int:
    if not isinstance(text, str) or not _HEX16.fullmatch(text):
        raise ValueError(f"{text!r} is not 16 lower-case hex digits")
    return int(text, 16)


def to_hex(data: bytes) -> str:
    return bytes(data).hex()


def from_hex(text: str) -> bytes:
    return bytes.fromhex(text)


def check_token_hash(value: str) -> str:
    """A tenant's token hash: sha256, 64 lower-case hex digits.  Anything else (a plain
    token above all) is refused, so no token can reach the database by mistake."""
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise ValueError("a tenant's token hash must be its sha256 in lower-case hex")
    return value


def _positions(items: Iterable[Any]) -> dict[int, Any]:
    return dict(enumerate(items))


def _ordered(m: Mapping[int, Any]) -> list[Any]:
    return [m[i] for i in sorted(m)]


def hop_text(h: tuple[int, int, int, int]) -> str:
    sd, sp, dd, dp = h
    return f"{hex64(sd)}/{sp}-{hex64(dd)}/{dp}"


def hop_tuple(text: str) -> tuple[int, int, int, int]:
    try:
        a, b = text.split("-")
        (sd, sp), (dd, dp) = (x.split("/") for x in (a, b))
        return unhex64(sd), int(sp), unhex64(dd), int(dp)
    except ValueError:
        raise ValueError(f"bad stored hop {text!r}") from None


def hops_map(hops: PathHops) -> dict[int, str]:
    return _positions(hop_text(h) for h in hops)


def hops_from_map(m: Mapping[int, str]) -> PathHops:
    return tuple(hop_tuple(t) for t in _ordered(m))


# --- allocation spaces and owners ---------------------------------------------------------
def _enc(o: object) -> Any:
    if o is None or isinstance(o, bool | str):
        return o
    if isinstance(o, int):
        return int(o)
    if isinstance(o, Hop):
        return {"hop": [o.src_dpid, o.src_port, o.dst_dpid, o.dst_port]}
    if isinstance(o, tuple):
        return [_enc(x) for x in o]
    raise TypeError(f"cannot store {type(o).__name__} {o!r} in an allocation space or owner")


def _dec(v: Any) -> Hashable:
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, list):
        return tuple(_dec(x) for x in v)
    if isinstance(v, dict) and set(v) == {"hop"}:
        h = v["hop"]
        if not (isinstance(h, list) and len(h) == 4 and all(type(x) is int for x in h)):
            raise ValueError(f"bad Hop {v!r}")
        return Hop(*h)
    raise ValueError(f"cannot decode {v!r} as an allocation space or owner")


def encode_key(obj: Hashable) -> str:
    """An allocation space or owner as canonical JSON (see the module docstring)."""
    return json.dumps(_enc(obj), separators=(",", ":"))


def decode_key(text: str) -> Hashable:
    return _dec(json.loads(text))


def allocation_row(space: Hashable, owner: Hashable, ident: int) -> Row:
    return {
        "space": encode_key(space),
        "owner": encode_key(owner),
        "id": ident,
        "network": owner_network(owner),
    }


def allocation_from_row(row: Mapping[str, Any]) -> tuple[tuple[Hashable, ...], Hashable, int]:
    """(space, owner, id) as `IdAllocator.restore` takes them."""
    space = decode_key(row["space"])
    if not isinstance(space, tuple):
        raise ValueError(f"allocation space {row['space']!r} is not a tuple")
    return space, decode_key(row["owner"]), row["id"]


# --- tenants and counters -----------------------------------------------------------------
def tenant_row(
    tenant_id: int, name: str, token_hash: str, limits: Mapping[str, int] | None = None
) -> Row:
    """`limits`: the tenant's own values over the daemon's defaults (schema 1.4: an empty
    map, as a converted older database has, is "all defaults")."""
    return {"id": tenant_id, "name": name, "token_hash": check_token_hash(token_hash),
            "limits": dict(limits or {})}  # fmt: skip


def tenant_from_row(row: Mapping[str, Any]) -> Tenant:
    return Tenant(row["id"], row["name"], row["token_hash"], limits=dict(row.get("limits") or {}))


def counters_row(counters: Mapping[str, int]) -> Row:
    unknown = set(counters) - set(COUNTERS)
    if unknown:
        raise ValueError(f"unknown counters {sorted(unknown)}; known: {', '.join(COUNTERS)}")
    return {k: int(v) for k, v in counters.items()}


# --- virtual networks ---------------------------------------------------------------------
@dataclass
class NetworkRows:
    """One virtual network as rows: its Virtual_Network row and its subtree, each table's
    rows by key (`KEYS`)."""

    network: Row
    tables: dict[str, dict[Key, Row]] = field(
        default_factory=lambda: {t: {} for t in NETWORK_TABLES}
    )

    def add(self, table: str, row: Row) -> None:
        self.tables[table][key(table, row)] = row


def network_rows(net: VirtualNetwork) -> NetworkRows:
    """Every row `net` is stored as.  The Virtual_Network row has no `generation` (the
    store keeps that column)."""
    nid = net.id
    out = NetworkRows(
        {
            "id": nid,
            "tenant": net.tenant_id,
            "controller_urls": _positions(net.controller_urls),
            "network_address": net.network_address,
            "mask": net.mask,
            "scalability": net.scalability,
            "started": bool(net.started),
            # the admin's override of the default limits: only what it sets (an empty map
            # is what a network without one, or a row from before schema 1.3, holds)
            "limits": net.limits.given(),
        }
    )
    for vdpid, sw in net.switches.items():
        if vdpid != sw.vdpid:
            raise ValueError(f"network {nid}: switch {sw.vdpid:#x} is filed under {vdpid:#x}")
        v = hex64(vdpid)
        out.add(
            "Vswitch",
            {
                "network": nid,
                "vdpid": v,
                "dpids": _positions(hex64(d) for d in sw.dpids),
                "index": sw.index,
                "own_controllers": sw.controller_urls is not None,
                "controller_urls": _positions(sw.controller_urls or []),
                "routing": sw.routing,
                "backup_num": sw.backup_num,
            },
        )
        for number, vp in sw.ports.items():
            if number != vp.number:
                raise ValueError(f"network {nid}: vport {vp.number} is filed under {number}")
            out.add(
                "Vport",
                {
                    "network": nid,
                    "vdpid": v,
                    "number": vp.number,
                    "dpid": hex64(vp.dpid),
                    "port": vp.port,
                    "kind": VPortKind(vp.kind).value,
                    "link": vp.link_id,
                    # absent unless set: a plain vport's row is what schema 1.1 wrote
                    "exclusive": True if vp.exclusive else None,
                },
            )
        for rid, r in sw.routes.items():
            if rid != r.id:
                raise ValueError(f"network {nid}: route {r.id} is filed under {rid}")
            out.add(
                "Route",
                {
                    "network": nid,
                    "vdpid": v,
                    "id": r.id,
                    "src_vport": r.src_vport,
                    "dst_vport": r.dst_vport,
                    "priority": r.path.priority,
                    "hops": hops_map(r.path.hops),
                },
            )
    for lid, lk in net.links.items():
        if lid != lk.id:
            raise ValueError(f"network {nid}: vlink {lk.id} is filed under {lid}")
        out.add(
            "Vlink",
            {
                "network": nid,
                "id": lk.id,
                "src_vdpid": hex64(lk.src.vdpid),
                "src_vport": lk.src.vport,
                "dst_vdpid": hex64(lk.dst.vdpid),
                "dst_vport": lk.dst.vport,
                "algorithm": lk.algorithm,
                "backup_num": lk.backup_num,
            },
        )
        for pos, p in enumerate(lk.paths):
            out.add(
                "Vlink_Path",
                {
                    "network": nid,
                    "link": lk.id,
                    "priority": p.priority,
                    "position": pos,
                    "hops": hops_map(p.hops),
                },
            )
    for hid, h in net.hosts.items():
        if hid != h.id:
            raise ValueError(f"network {nid}: host {h.id} is filed under {hid}")
        out.add("Host", host_row(nid, h))
    return out


def host_row(nid: int, h: Host) -> Row:
    return {
        "network": nid,
        "id": h.id,
        "vdpid": hex64(h.vdpid),
        "vport": h.vport,
        "mac": h.mac,
        "location": _location(h.location),
    }


def _location(where: tuple[int, int] | None) -> str | None:
    """A moved host's physical port as stored: "<dpid, 16 hex digits>:<port>"."""
    return None if where is None else f"{hex64(where[0])}:{where[1]}"


def network_from_rows(rows: NetworkRows) -> VirtualNetwork:
    """The network `network_rows` stored; raises ValueError on a row whose parent is
    missing (a vport of no vswitch, a path of no vlink)."""
    n = rows.network
    nid = n["id"]
    net = VirtualNetwork(
        nid,
        n["tenant"],
        _ordered(n["controller_urls"]),
        n.get("network_address"),
        n.get("mask"),
        n["scalability"],
        bool(n["started"]),
    )
    net.limits = Limits(**(n.get("limits") or {}))
    net.revision = n.get("generation") or 0
    t = rows.tables
    for r in sorted(t["Vswitch"].values(), key=lambda r: r["vdpid"]):
        vdpid = unhex64(r["vdpid"])
        net.switches[vdpid] = VSwitch(
            vdpid,
            [unhex64(d) for d in _ordered(r["dpids"])],
            r["index"],
            controller_urls=_ordered(r["controller_urls"]) if r["own_controllers"] else None,
            routing=r["routing"],
            backup_num=r["backup_num"],
        )

    def switch(r: Row, what: str) -> VSwitch:
        sw = net.switches.get(unhex64(r["vdpid"]))
        if sw is None:
            raise ValueError(f"network {nid}: {what} of vswitch {r['vdpid']}, which is not stored")
        return sw

    for r in sorted(t["Vport"].values(), key=lambda r: (r["vdpid"], r["number"])):
        switch(r, f"vport {r['number']}").ports[r["number"]] = VPort(
            r["number"],
            unhex64(r["dpid"]),
            r["port"],
            VPortKind(r["kind"]),
            r.get("link"),
            exclusive=bool(r.get("exclusive")),  # absent: a row from before schema 1.2
        )
    for r in sorted(t["Route"].values(), key=lambda r: (r["vdpid"], r["id"])):
        switch(r, f"route {r['id']}").routes[r["id"]] = Route(
            r["id"],
            r["src_vport"],
            r["dst_vport"],
            ManualPath(hops_from_map(r["hops"]), r["priority"]),
        )
    for r in sorted(t["Vlink"].values(), key=lambda r: r["id"]):
        net.links[r["id"]] = VLink(
            r["id"],
            VLinkEnd(unhex64(r["src_vdpid"]), r["src_vport"]),
            VLinkEnd(unhex64(r["dst_vdpid"]), r["dst_vport"]),
            algorithm=r["algorithm"],
            backup_num=r["backup_num"],
        )
    for r in sorted(t["Vlink_Path"].values(), key=lambda r: (r["link"], r["position"])):
        lk = net.links.get(r["link"])
        if lk is None:
            raise ValueError(f"network {nid}: a path of vlink {r['link']}, which is not stored")
        lk.paths.append(ManualPath(hops_from_map(r["hops"]), r["priority"]))
    for r in sorted(t["Host"].values(), key=lambda r: r["id"]):
        loc = r.get("location")
        where = None
        if loc:
            d, _, pt = loc.partition(":")
            where = (unhex64(d), int(pt))
        net.hosts[r["id"]] = Host(r["id"], unhex64(r["vdpid"]), r["vport"], r["mac"], where)
    return net


# --- dedicated network bridges ------------------------------------------------------------
def dnb_node_row(n: Node) -> Row:
    return {
        "name": n.name,
        "index": n.index,
        "ovsdb": n.ovsdb,
        "transport_ip": str(n.transport_ip),
        "transport_port": n.transport_port,
        "netns": n.netns,
        "rundir": n.rundir,
    }


def dnb_node_from_row(r: Mapping[str, Any]) -> Node:
    return Node(
        r["name"],
        r["index"],
        r["ovsdb"],
        ipaddress.IPv4Interface(r["transport_ip"]),
        r["transport_port"],
        r.get("netns"),
        r.get("rundir"),
    )


def dnb_network_row(n: Network) -> Row:
    return {
        "id": n.id,
        "tenant": n.tenant_id,
        "mode": Mode(n.mode).value,
        "segmentation_id": n.segmentation_id,
        "local_vid": n.local_vid,
        "endpoint_subnet": str(n.endpoint_subnet),
        "serial": n.serial,
        "controller": n.controller,
    }


def dnb_network_from_row(r: Mapping[str, Any]) -> Network:
    return Network(
        r["id"],
        r["tenant"],
        Mode(r["mode"]),
        r["segmentation_id"],
        r["local_vid"],
        ipaddress.IPv4Network(r["endpoint_subnet"]),
        r["serial"],
        r.get("controller"),
    )


def dnb_vm_row(vm: VmBinding) -> Row:
    return {
        "network": vm.network,
        "node": vm.node,
        "mac": vm.mac,
        "ip": str(vm.ip),
        "interface": vm.interface,
    }


def dnb_vm_from_row(r: Mapping[str, Any]) -> VmBinding:
    return VmBinding(
        r["network"], r["node"], r["mac"], ipaddress.IPv4Interface(r["ip"]), r["interface"]
    )


def dnb_port_row(p: TenantPort) -> Row:
    return {
        "network": p.network,
        "node": p.node,
        "name": p.name,
        "kind": PortKind(p.kind).value,
        "remote_ip": None if p.remote_ip is None else str(p.remote_ip),
        "key": p.key,
    }


def dnb_port_from_row(r: Mapping[str, Any]) -> TenantPort:
    rip = r.get("remote_ip")
    return TenantPort(
        r["network"],
        r["node"],
        r["name"],
        PortKind(r["kind"]),
        None if rip is None else ipaddress.IPv4Address(rip),
        r.get("key"),
    )


def dnb_rows(intent: Intent) -> dict[str, dict[Key, Row]]:
    """The whole DNB intent as rows, per table and key."""
    out: dict[str, dict[Key, Row]] = {t: {} for t in DNB_TABLES}
    for name, node in intent.nodes.items():
        if name != node.name:
            raise ValueError(f"node {node.name} is filed under {name}")
        r = dnb_node_row(node)
        out["Dnb_Node"][key("Dnb_Node", r)] = r
    for nid, n in intent.networks.items():
        if nid != n.id:
            raise ValueError(f"DNB network {n.id} is filed under {nid}")
        r = dnb_network_row(n)
        out["Dnb_Network"][key("Dnb_Network", r)] = r
    for k, vm in intent.vms.items():
        if k != (vm.network, vm.mac):
            raise ValueError(f"VM {vm.mac} of {vm.network} is filed under {k}")
        r = dnb_vm_row(vm)
        out["Dnb_Vm"][key("Dnb_Vm", r)] = r
    for k, p in intent.tenant_ports.items():
        if k != (p.node, p.name):
            raise ValueError(f"tenant port {p.name} on {p.node} is filed under {k}")
        r = dnb_port_row(p)
        out["Dnb_Tenant_Port"][key("Dnb_Tenant_Port", r)] = r
    return out


def dnb_from_rows(tables: Mapping[str, Iterable[Mapping[str, Any]]]) -> Intent:
    out = Intent()
    for r in tables.get("Dnb_Node", ()):
        node = dnb_node_from_row(r)
        out.nodes[node.name] = node
    for r in tables.get("Dnb_Network", ()):
        net = dnb_network_from_row(r)
        out.networks[net.id] = net
    for r in tables.get("Dnb_Vm", ()):
        vm = dnb_vm_from_row(r)
        out.vms[(vm.network, vm.mac)] = vm
    for r in tables.get("Dnb_Tenant_Port", ()):
        p = dnb_port_from_row(r)
        out.tenant_ports[(p.node, p.name)] = p
    return out


# --- what tenants installed: rules, groups, meters ----------------------------------------
def flow_row(f: FlowRecord) -> Row:
    return {
        "network": f.net_id,
        "vdpid": hex64(f.vdpid),
        "serial": f.serial,
        "table_id": f.table,
        "priority": f.priority,
        "match": to_hex(f.match),
        "instructions": to_hex(f.instructions),
        "cookie": hex64(f.cookie),
        "idle_timeout": f.idle_timeout,
        "hard_timeout": f.hard_timeout,
        "flags": f.flags,
    }


def flow_from_row(r: Mapping[str, Any]) -> FlowRecord:
    return FlowRecord(
        r["network"],
        unhex64(r["vdpid"]),
        r["serial"],
        r["table_id"],
        r["priority"],
        from_hex(r["match"]),
        from_hex(r["instructions"]),
        unhex64(r["cookie"]),
        r["idle_timeout"],
        r["hard_timeout"],
        r["flags"],
    )


def group_row(g: GroupRecord) -> Row:
    return {
        "network": g.net_id,
        "vdpid": hex64(g.vdpid),
        "group_id": g.group_id,
        "type": g.type,
        "buckets": to_hex(g.buckets),
        "phys_id": g.phys_id,
    }


def group_from_row(r: Mapping[str, Any]) -> GroupRecord:
    return GroupRecord(
        r["network"], unhex64(r["vdpid"]), r["group_id"], r["type"],
        from_hex(r["buckets"]), r["phys_id"],
    )  # fmt: skip


def meter_row(m: MeterRecord) -> Row:
    return {
        "network": m.net_id,
        "vdpid": hex64(m.vdpid),
        "meter_id": m.meter_id,
        "flags": m.flags,
        "bands": to_hex(m.bands),
        "phys_id": m.phys_id,
    }


def meter_from_row(r: Mapping[str, Any]) -> MeterRecord:
    return MeterRecord(
        r["network"], unhex64(r["vdpid"]), r["meter_id"], r["flags"],
        from_hex(r["bands"]), r["phys_id"],
    )  # fmt: skip


def vswitch_key(net_id: int, vdpid: int) -> Key:
    """The Vswitch key of (network, vdpid)."""
    return net_id, hex64(vdpid)


def state_key(net_id: int, vdpid: int, ident: int) -> Key:
    """The key of a Tenant_Flow (serial), Tenant_Group or Tenant_Meter (tenant's id) row."""
    return net_id, hex64(vdpid), ident

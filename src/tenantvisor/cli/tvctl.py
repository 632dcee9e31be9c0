"""tvctl: noun-verb command line over tenantvisor's REST API, in the habits of ovn-nbctl.

    tvctl [--url URL] [--token TOKEN] [--format table|json] COMMAND [ARG...]

Commands are `noun-verb` (`net-add`, `switch-del`, ...).  `--format json` prints the API's
JSON unchanged, for scripts; `table` (the default) prints lists as aligned columns and single
objects as `key : value` records, like `ovs-vsctl list`.  Adds print what was created, because
the ids are chosen by the server; deletes, start and stop print nothing on success.
Every failure prints one line, `tvctl: <why>`, to stderr and exits 1: never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import httpx

from tenantvisor.api.ids import dpid_str, parse_dpid

DEFAULT_URL = "http://127.0.0.1:8080"
# flow-rule reduction levels, as virtual/manager.py's SCALABILITY_LEVELS (a test keeps them equal)
SCALABILITY_LEVELS = ("exact", "app", "host", "hop", "lite")
TIMEOUT = 10.0


class CliError(Exception):
    """A failure to report as `tvctl: <message>`, exit status 1."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage mistakes like every other failure (one line, exit 1)."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (try 'tvctl --help')")


# --- argument types ------------------------------------------------------------------------
def _dpid_arg(text: str) -> int:
    try:
        return parse_dpid(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _int_arg(text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


# --- output ----------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_cell(v) for v in value) + "]"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Aligned columns under a header and a dashed rule (ovs-vsctl --format=table)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = [
        "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def format_record(fields: Sequence[tuple[str, Any]]) -> str:
    """`key : value` lines with the colons aligned (ovs-vsctl list)."""
    width = max((len(k) for k, _ in fields), default=0)
    return "\n".join(f"{k.ljust(width)} : {_cell(v)}".rstrip() for k, v in fields)


def _sections(parts: Sequence[tuple[str, str]]) -> str:
    return "\n\n".join(f"{title}:\n{body}" if title else body for title, body in parts)


def _hop(h: dict[str, Any]) -> str:
    return f"{dpid_str(h['src_dpid'])}/{h['src_port']}->{dpid_str(h['dst_dpid'])}/{h['dst_port']}"


def _path(path: list[dict[str, Any]] | None) -> str:
    return "(none)" if path is None else " ".join(_hop(h) for h in path)


def show_tenant_created(t: dict[str, Any]) -> str:
    return format_record([("id", t["id"]), ("name", t["name"]), ("token", t["token"])])


def show_tenants(ts: list[dict[str, Any]]) -> str:
    return format_table(
        ["id", "name", "networks"], [[t["id"], t["name"], t["networks"]] for t in ts]
    )


def show_physical(topo: dict[str, Any]) -> str:
    sws = topo["switches"]
    switches = format_table(
        ["dpid", "connected", "n_tables", "qinq_ok", "ports"],
        [
            [
                s["dpid_str"],
                s["connected"],
                s["n_tables"],
                s.get("qinq_ok"),
                [p["port_no"] for p in s["ports"]],
            ]
            for s in sws
        ],
    )
    ports = format_table(
        ["dpid", "port", "name", "hw_addr", "up"],
        [
            [s["dpid_str"], p["port_no"], p["name"], p["hw_addr"], p["up"]]
            for s in sws
            for p in s["ports"]
        ],
    )
    links = format_table(
        ["src_dpid", "src_port", "dst_dpid", "dst_port", "mtu_ok"],
        [
            [
                dpid_str(lk["src_dpid"]),
                lk["src_port"],
                dpid_str(lk["dst_dpid"]),
                lk["dst_port"],
                lk.get("mtu_ok"),
            ]
            for lk in topo["links"]
        ],
    )
    return _sections([("switches", switches), ("ports", ports), ("links", links)])


def show_networks(nets: list[dict[str, Any]]) -> str:
    return format_table(
        ["id", "tenant", "started", "controllers", "switches", "links", "hosts"],
        [
            [
                n["id"],
                n["tenant_id"],
                n["started"],
                n["controller_urls"],
                len(n["switches"]),
                len(n["links"]),
                len(n["hosts"]),
            ]
            for n in nets
        ],
    )


def _network_record(n: dict[str, Any]) -> str:
    return format_record(
        [
            ("id", n["id"]),
            ("tenant_id", n["tenant_id"]),
            ("controller_urls", n["controller_urls"]),
            ("network_address", n["network_address"]),
            ("mask", n["mask"]),
            ("scalability", n["scalability"]),
            ("started", n["started"]),
        ]
    )


def _end(vdpid: int, vport: int) -> str:
    return f"{dpid_str(vdpid)}/{vport}"


def show_network(n: dict[str, Any]) -> str:
    switches = format_table(
        ["vdpid", "dpids", "routing", "backup_num"],
        [[s["vdpid_str"], s["dpids_str"], s["routing"], s["backup_num"]] for s in n["switches"]],
    )
    routes = [(s, r) for s in n["switches"] for r in s["routes"]]
    route_table = format_table(
        ["vdpid", "id", "src", "dst", "priority", "live", "path"],
        [
            [
                s["vdpid_str"],
                r["id"],
                r["src_vport"],
                r["dst_vport"],
                r["priority"],
                r["live"],
                _path(r["path"]),
            ]
            for s, r in routes
        ],
    )
    ports = format_table(
        ["vdpid", "vport", "dpid", "port", "kind", "link", "exclusive"],
        [
            [s["vdpid_str"], p["number"], dpid_str(p["dpid"]), p["port"], p["kind"], p["link_id"],
             p.get("exclusive", False)]
            for s in n["switches"]
            for p in s["ports"]
        ],
    )  # fmt: skip
    links = format_table(
        ["id", "src", "dst", "algorithm", "backup_num", "path"],
        [
            [
                lk["id"],
                _end(lk["src_vdpid"], lk["src_vport"]),
                _end(lk["dst_vdpid"], lk["dst_vport"]),
                lk["algorithm"],
                lk["backup_num"],
                _path(lk["path"]),
            ]
            for lk in n["links"]
        ],
    )
    backups = [
        [lk["id"], i, _path(p)] for lk in n["links"] for i, p in enumerate(lk["backup_paths"], 1)
    ]
    manual = [
        [lk["id"], p["priority"], p["live"], _path(p["path"])]
        for lk in n["links"]
        for p in lk["paths"]
    ]
    hosts = format_table(
        ["id", "vdpid", "vport", "mac"],
        [[h["id"], dpid_str(h["vdpid"]), h["vport"], h["mac"]] for h in n["hosts"]],
    )
    parts = [("", _network_record(n)), ("switches", switches), ("ports", ports)]
    if routes:
        parts.append(("routes", route_table))
    parts.append(("links", links))
    if backups:  # the paths that take over, in order, when the one before fails
        parts.append(("backup paths", format_table(["link", "backup", "path"], backups)))
    if manual:
        parts.append(("manual paths", format_table(["link", "priority", "live", "path"], manual)))
    parts.append(("hosts", hosts))
    return _sections(parts)


def show_switch(s: dict[str, Any]) -> str:
    fields: list[tuple[str, Any]] = [
        ("vdpid", s["vdpid_str"]),
        ("dpid", s["dpid_str"]),
        ("dpids", s["dpids_str"]),
        ("routing", s["routing"]),
        ("backup_num", s["backup_num"]),
    ]
    fields += [
        (
            f"route {r['id']}",
            f"{r['src_vport']}->{r['dst_vport']} priority {r['priority']}"
            f"{'' if r['live'] else ' (down)'}: {_path(r['path'])}",
        )
        for r in s["routes"]
    ]
    return format_record(fields)


def show_route(r: dict[str, Any]) -> str:
    return format_record(
        [
            ("id", r["id"]),
            ("src_vport", r["src_vport"]),
            ("dst_vport", r["dst_vport"]),
            ("priority", r["priority"]),
            ("live", r["live"]),
            ("path", _path(r["path"])),
        ]
    )


def show_port(p: dict[str, Any]) -> str:
    return format_record(
        [
            ("vdpid", p["vdpid_str"]),
            ("vport", p["number"]),
            ("dpid", dpid_str(p["dpid"])),
            ("port", p["port"]),
            ("kind", p["kind"]),
            ("exclusive", p.get("exclusive", False)),
        ]
    )


def show_link(lk: dict[str, Any]) -> str:
    fields: list[tuple[str, Any]] = [
        ("id", lk["id"]),
        ("src", _end(lk["src_vdpid"], lk["src_vport"])),
        ("dst", _end(lk["dst_vdpid"], lk["dst_vport"])),
        ("algorithm", lk["algorithm"]),
        ("backup_num", lk["backup_num"]),
        ("path", _path(lk["path"])),
    ]
    fields += [(f"backup {i}", _path(p)) for i, p in enumerate(lk["backup_paths"], 1)]
    fields += [
        (f"manual {p['priority']}", _path(p["path"]) + ("" if p["live"] else " (down)"))
        for p in lk["paths"]
    ]
    return format_record(fields)


def show_host(h: dict[str, Any]) -> str:
    rows: list[tuple[str, Any]] = [
        ("id", h["id"]), ("vdpid", dpid_str(h["vdpid"])), ("vport", h["vport"]), ("mac", h["mac"])
    ]  # fmt: skip
    where = h.get("location")
    if where:
        rows.append(("location", f"{dpid_str(where['dpid'])} port {where['port']}"))
    return format_record(rows)


def _limits_text(d: dict[str, int]) -> str:
    """`vport_pps=2000 vlink_kbps=50000`: what is set (0 is unlimited, shown as such)."""
    return " ".join(f"{k}={v}" for k, v in d.items() if v) or "(unlimited)"


def show_limits(r: dict[str, Any]) -> str:
    record = format_record(
        [
            ("network", r["network"]),
            ("override", " ".join(f"{k}={v}" for k, v in r["override"].items()) or "(none)"),
            ("defaults", _limits_text(r["defaults"])),
            ("effective", _limits_text(r["effective"])),
            ("dropped", r["dropped"]),
        ]
    )
    rows = []
    for m in r["meters"]:
        what = (
            _end(m["vdpid"], m["vport"]) if m["kind"] == "vport"
            else f"link {m['link_id']} {m['direction']}"
        )  # fmt: skip
        where = f"{dpid_str(m['dpid'])}#{m['meter_id']}" if m.get("dpid") is not None else ""
        rows.append([m["kind"], what, f"{m['rate']} {m['unit']}", m["packets"], m["dropped"],
                     where])  # fmt: skip
    meters = format_table(["kind", "limits", "rate", "packets", "dropped", "meter"], rows)
    return _sections([("", record), ("meters", meters)])


def show_status(st: dict[str, Any]) -> str:
    return format_record(sorted(st.items()))


def _count(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) and not value.is_integer() else (
        int(value) if isinstance(value, float) else value)  # fmt: skip


def show_quotas(q: dict[str, Any]) -> str:
    """A tenant's limits (value in force, default, whether its own), what it holds and what
    was refused, then what the rate limits did; or the defaults alone."""
    who = "defaults" if q["tenant_id"] is None else f"{q['tenant']} (id {q['tenant_id']})"
    rows = [
        [k, v["limit"], v["default"], v["own"], v.get("used"), v.get("refused")]
        for k, v in q["limits"].items()
    ]
    parts = [
        ("", format_record([("tenant", who)])),
        ("", format_table(["limit", "value", "default", "own", "used", "refused"], rows)),
    ]
    if q.get("counters"):
        parts.append(
            (
                "limits applied (since the daemon started)",
                format_record([(k, _count(v)) for k, v in q["counters"].items()]),
            )
        )
    return _sections(parts)  # fmt: skip


# --- HTTP ------------------------------------------------------------------------------------
class Api:
    """Thin client: one request per command, errors turned into CliError messages."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            with httpx.Client(base_url=self.url, timeout=TIMEOUT) as client:
                resp = client.request(method, path, json=body, headers=headers)
        except httpx.InvalidURL as exc:
            raise CliError(f"invalid URL {self.url!r}: {exc}") from None
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach {self.url}: {exc or type(exc).__name__}") from None
        if resp.status_code >= 400:
            raise CliError(self._error(resp))
        if resp.status_code == 204 or not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise CliError(f"{self.url}{path}: the server sent a reply that is not JSON") from None

    def _error(self, resp: httpx.Response) -> str:
        try:
            message = str(resp.json()["error"])
        except (ValueError, KeyError, TypeError):
            message = resp.text.strip() or resp.reason_phrase
        if resp.status_code == 401 and not self.token:
            message += " (give --token or set TVCTL_TOKEN)"
        return message


# --- commands --------------------------------------------------------------------------------
Reply = tuple[Any, Callable[[Any], str] | None]  # what the API said, and how to show it
Command = Callable[[Api, argparse.Namespace], Reply]
ArgsFn = Callable[[argparse.ArgumentParser], object]
_COMMANDS: dict[str, tuple[Command, str, ArgsFn]] = {}


def command(
    name: str, help_text: str, args: ArgsFn = lambda p: None
) -> Callable[[Command], Command]:
    """Register a command: its handler, its one-line help and its argument declarations."""

    def register(fn: Command) -> Command:
        _COMMANDS[name] = (fn, help_text, args)
        return fn

    return register


def _net(p: argparse.ArgumentParser) -> None:
    p.add_argument("net", type=_int_arg, metavar="NET", help="network id")


@command(
    "tenant-add", "create a tenant (admin); prints its token", lambda p: p.add_argument("name")
)
def _tenant_add(api: Api, a: argparse.Namespace) -> Reply:
    return api.call("POST", "/v1/tenants", {"name": a.name}), show_tenant_created


@command("tenant-list", "list tenants (admin)")
def _tenant_list(api: Api, a: argparse.Namespace) -> Reply:
    return api.call("GET", "/v1/tenants"), show_tenants


@command(
    "tenant-del",
    "delete a tenant and its networks (admin)",
    lambda p: p.add_argument("id", type=_int_arg, metavar="ID"),
)
def _tenant_del(api: Api, a: argparse.Namespace) -> Reply:
    return api.call("DELETE", f"/v1/tenants/{a.id}"), None


def _tenant_id(api: Api, tenant: str) -> int:
    """A tenant given by id, or by name (looked up: the admin's tenant list)."""
    if tenant.isdigit():
        return int(tenant)
    found = [t["id"] for t in api.call("GET", "/v1/tenants") if t["name"] == tenant]
    if not found:
        raise CliError(f"no tenant named {tenant!r}")
    return int(found[0])


def _quota_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "tenant", nargs="?", metavar="TENANT",
        help="id or name; without it: your own (a tenant's token) or the defaults (admin)",
    )  # fmt: skip
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="give the tenant its own value of a limit (admin); repeat for several",
    )  # fmt: skip
    p.add_argument(
        "--reset", action="append", default=[], metavar="KEY",
        help="the tenant takes the default of this limit again ('all': of every limit)",
    )  # fmt: skip


@command(
    "tenant-quota",
    "show a tenant's limits, what it holds, refusals and rate limiting; --set/--reset (admin)",
    _quota_args,
)
def _tenant_quota(api: Api, a: argparse.Namespace) -> Reply:
    if a.tenant is None:
        if a.set or a.reset:
            raise CliError("--set and --reset need a TENANT")
        return api.call("GET", "/v1/quotas"), show_quotas
    path = f"/v1/tenants/{_tenant_id(api, a.tenant)}/quotas"
    if not a.set and not a.reset:
        return api.call("GET", path), show_quotas
    current = api.call("GET", path)["limits"]
    own: dict[str, Any] = {k: v["limit"] for k, v in current.items() if v["own"]}
    for key in a.reset:
        if key == "all":
            own.clear()
        elif key not in current:
            raise CliError(f"unknown limit {key!r}: one of {', '.join(current)}")
        else:
            own.pop(key, None)
    for item in a.set:
        key, sep, value = item.partition("=")
        if not sep or key not in current:
            raise CliError(f"--set {item!r}: expected KEY=VALUE, KEY one of {', '.join(current)}")
        try:
            own[key] = int(value, 10)
        except ValueError:
            raise CliError(f"--set {item!r}: {value!r} is not a whole number") from None
    return api.call("PUT", path, own), show_quotas


@command("phys-show", "show physical switches, ports and links")
def _phys_show(api: Api, a: argparse.Namespace) -> Reply:
    return api.call("GET", "/v1/physical/topology"), show_physical


def _net_add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--controller",
        action="append",
        default=[],
        metavar="URL",
        help="tcp:IP:PORT or ptcp:PORT[:IP]; repeat for several",
    )
    p.add_argument("--network-address", metavar="A", help="IPv4 network address")
    p.add_argument("--mask", type=_int_arg, metavar="M", help="prefix length")
    p.add_argument("--tenant", type=_int_arg, metavar="ID", help="owner (admin only)")
    p.add_argument(
        "--scalability",
        choices=SCALABILITY_LEVELS,
        metavar="LEVEL",
        help=f"flow-rule reduction level: {', '.join(SCALABILITY_LEVELS)} (default exact)",
    )


@command("net-add", "create a virtual network", _net_add_args)
def _net_add(api: Api, a: argparse.Namespace) -> Reply:
    body: dict[str, Any] = {"controller_urls": a.controller}
    if a.network_address is not None:
        body["network_address"] = a.network_address
    if a.mask is not None:
        body["mask"] = a.mask
    if a.scalability is not None:
        body["scalability"] = a.scalability
    if a.tenant is not None:
        body["tenant_id"] = a.tenant
    return api.call("POST", "/v1/networks", body), _network_record


@command("net-list", "list virtual networks")
def _net_list(api: Api, a: argparse.Namespace) -> Reply:
    return api.call("GET", "/v1/networks"), show_networks


@command("net-show", "show a virtual network", _net)
def _net_show(api: Api, a: argparse.Namespace) -> Reply:
    return api.call("GET", f"/v1/networks/{a.net}"), show_network


@command("net-start", "start a virtual network", _net)
def _net_start(api: Api, a: argparse.Namespace) -> Reply:
    return api.call("POST", f"/v1/networks/{a.net}/start"), None


@command("net-stop", "stop a virtual network", _net)
def _net_stop(api: Api, a: argparse.Namespace) -> Reply:
    return api.call("POST", f"/v1/networks/{a.net}/stop"), None


@command("net-del", "delete a virtual network", _net)
def _net_del(api: Api, a: argparse.Namespace) -> Reply:
    return api.call("DELETE", f"/v1/networks/{a.net}"), None


def _net_scalability_args(p: argparse.ArgumentParser) -> None:
    _net(p)
    p.add_argument(
        "level",
        choices=SCALABILITY_LEVELS,
        metavar="LEVEL",
        help=f"flow-rule reduction level: {', '.join(SCALABILITY_LEVELS)}",
    )


@command(
    "net-set-scalability",
    "set a virtual network's flow-rule reduction level",
    _net_scalability_args,
)
def _net_set_scalability(api: Api, a: argparse.Namespace) -> Reply:
    body = {"level": a.level}
    return api.call("PUT", f"/v1/networks/{a.net}/scalability", body), _network_record


@command("net-limits", "show a network's data-plane limits and what they dropped", _net)
def _net_limits(api: Api, a: argparse.Namespace) -> Reply:
    return api.call("GET", f"/v1/networks/{a.net}/limits"), show_limits


_LIMIT_OPTIONS = ("vport_pps", "vport_kbps", "vlink_pps", "vlink_kbps")


def _net_limits_args(p: argparse.ArgumentParser) -> None:
    _net(p)
    for name in _LIMIT_OPTIONS:
        kind, unit = name.split("_")
        p.add_argument(
            f"--{name.replace('_', '-')}", dest=name, type=_int_arg, metavar="N",
            help=f"per {'edge vport' if kind == 'vport' else 'vlink direction'}, in "
            f"{'packets/s' if unit == 'pps' else 'kb/s'} (0: unlimited)",
        )  # fmt: skip


@command(
    "net-set-limits",
    "override a network's default data-plane limits (admin); options not given: the "
    "default applies (none given: no override)",
    _net_limits_args,
)
def _net_set_limits(api: Api, a: argparse.Namespace) -> Reply:
    body = {k: getattr(a, k) for k in _LIMIT_OPTIONS if getattr(a, k) is not None}
    return api.call("PUT", f"/v1/networks/{a.net}/limits", body), show_limits


def _routing_args(p: argparse.ArgumentParser, positional: bool) -> None:
    if positional:
        p.add_argument("algorithm", choices=["spf", "manual"], metavar="{spf,manual}")
    else:
        p.add_argument(
            "--routing", choices=["spf", "manual"], help="a big switch's internal routing"
        )
    p.add_argument(
        "--backup-num", type=_int_arg, metavar="N", help="spf: link-disjoint backup paths (0-8)"
    )


def _switch_add_args(p: argparse.ArgumentParser) -> None:
    _net(p)
    p.add_argument(
        "dpids",
        type=_dpid_arg,
        nargs="+",
        metavar="DPID",
        help="physical dpid; several make a big switch",
    )
    p.add_argument("--vdpid", type=_dpid_arg, metavar="V", help="virtual dpid to use")
    _routing_args(p, positional=False)


@command("switch-add", "add a vswitch on pswitch DPID (a big switch on several)", _switch_add_args)
def _switch_add(api: Api, a: argparse.Namespace) -> Reply:
    body: dict[str, Any] = {"dpids": a.dpids}
    for key, value in (("vdpid", a.vdpid), ("routing", a.routing), ("backup_num", a.backup_num)):
        if value is not None:
            body[key] = value
    return api.call("POST", f"/v1/networks/{a.net}/switches", body), show_switch


def _vdpid_args(p: argparse.ArgumentParser) -> None:
    _net(p)
    p.add_argument("vdpid", type=_dpid_arg, metavar="VDPID")


@command("switch-del", "remove a vswitch", _vdpid_args)
def _switch_del(api: Api, a: argparse.Namespace) -> Reply:
    return api.call("DELETE", f"/v1/networks/{a.net}/switches/{a.vdpid}"), None


def _switch_ctl_args(p: argparse.ArgumentParser) -> None:
    _vdpid_args(p)
    p.add_argument(
        "url", nargs="*", metavar="URL",
        help="tcp:IP:PORT or ptcp:PORT[:IP]; none: use the network's controllers again",
    )  # fmt: skip


@command("switch-set-controller", "give a vswitch its own controllers", _switch_ctl_args)
def _switch_set_controller(api: Api, a: argparse.Namespace) -> Reply:
    body = {"controller_urls": a.url or None}
    path = f"/v1/networks/{a.net}/switches/{a.vdpid}/controllers"
    return api.call("PUT", path, body), show_switch


def _switch_routing_args(p: argparse.ArgumentParser) -> None:
    _vdpid_args(p)
    _routing_args(p, positional=True)


@command(
    "switch-set-routing",
    "set a big switch's internal routing: spf (with backups) or manual (its routes)",
    _switch_routing_args,
)
def _switch_set_routing(api: Api, a: argparse.Namespace) -> Reply:
    body = {"algorithm": a.algorithm, "backup_num": a.backup_num or 0}
    path = f"/v1/networks/{a.net}/switches/{a.vdpid}/routing"
    return api.call("PUT", path, body), show_switch


def _priority_arg(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--priority", type=_int_arg, metavar="N", required=True, help=help_text)


def _route_add_args(p: argparse.ArgumentParser) -> None:
    _vdpid_args(p)
    p.add_argument("src_vport", type=_int_arg, metavar="SRC_VPORT")
    p.add_argument("dst_vport", type=_int_arg, metavar="DST_VPORT")
    p.add_argument("path", metavar="PATH", help="dpid/port-dpid/port,... from SRC to DST")
    _priority_arg(p, "0-65535; the highest live route between two vports is used")
    p.add_argument("--both-ways", action="store_true", help="also add the route back (DST to SRC)")


@command("route-add", "add a manual internal route to a big switch", _route_add_args)
def _route_add(api: Api, a: argparse.Namespace) -> Reply:
    body = {
        "src_vport": a.src_vport,
        "dst_vport": a.dst_vport,
        "path": a.path,
        "priority": a.priority,
        "both_ways": a.both_ways,
    }
    return api.call("POST", f"/v1/networks/{a.net}/switches/{a.vdpid}/routes", body), show_route


def _route_del_args(p: argparse.ArgumentParser) -> None:
    _vdpid_args(p)
    p.add_argument("route", type=_int_arg, metavar="ROUTE", help="route id")
    p.add_argument(
        "--both-ways", action="store_true", help="also remove the route back (same links)"
    )


@command("route-del", "remove a big switch's route", _route_del_args)
def _route_del(api: Api, a: argparse.Namespace) -> Reply:
    path = f"/v1/networks/{a.net}/switches/{a.vdpid}/routes/{a.route}"
    return api.call("DELETE", path + ("?both_ways=true" if a.both_ways else "")), None


def _port_add_args(p: argparse.ArgumentParser) -> None:
    _net(p)
    p.add_argument("dpid", type=_dpid_arg, metavar="DPID", help="physical dpid")
    p.add_argument("port", type=_int_arg, metavar="PORT", help="physical port number")
    p.add_argument(
        "--vdpid", type=_dpid_arg, metavar="V", help="vswitch (default: the one on DPID)"
    )
    p.add_argument(
        "--exclusive", action="store_true",
        help="hold the physical port alone and admit every frame there (any source MAC, any "
        "VLAN), not only registered hosts' MACs; refused if another vport or host uses it",
    )  # fmt: skip


@command("port-add", "map physical port DPID/PORT into the vswitch on DPID", _port_add_args)
def _port_add(api: Api, a: argparse.Namespace) -> Reply:
    body: dict[str, Any] = {"dpid": a.dpid, "port": a.port}
    if a.vdpid is not None:
        body["vdpid"] = a.vdpid
    if a.exclusive:
        body["exclusive"] = True
    return api.call("POST", f"/v1/networks/{a.net}/ports", body), show_port


def _port_del_args(p: argparse.ArgumentParser) -> None:
    _vdpid_args(p)
    p.add_argument("vport", type=_int_arg, metavar="VPORT")


@command("port-del", "remove a vport", _port_del_args)
def _port_del(api: Api, a: argparse.Namespace) -> Reply:
    return api.call("DELETE", f"/v1/networks/{a.net}/switches/{a.vdpid}/ports/{a.vport}"), None


def _link_add_args(p: argparse.ArgumentParser) -> None:
    _net(p)
    p.add_argument("src_vdpid", type=_dpid_arg, metavar="SRC_VDPID")
    p.add_argument("src_vport", type=_int_arg, metavar="SRC_VPORT")
    p.add_argument("dst_vdpid", type=_dpid_arg, metavar="DST_VDPID")
    p.add_argument("dst_vport", type=_int_arg, metavar="DST_VPORT")
    p.add_argument(
        "--algorithm",
        choices=["spf", "manual"],
        help="spf (default: shortest path) or manual (down until link-set-path)",
    )
    p.add_argument(
        "--backup-num", type=_int_arg, metavar="N", help="spf: link-disjoint backup paths (0-8)"
    )


@command("link-add", "join two link vports with a vlink", _link_add_args)
def _link_add(api: Api, a: argparse.Namespace) -> Reply:
    body: dict[str, Any] = {
        "src_vdpid": a.src_vdpid,
        "src_vport": a.src_vport,
        "dst_vdpid": a.dst_vdpid,
        "dst_vport": a.dst_vport,
    }
    for key, value in (("algorithm", a.algorithm), ("backup_num", a.backup_num)):
        if value is not None:
            body[key] = value
    return api.call("POST", f"/v1/networks/{a.net}/links", body), show_link


def _link_path_args(p: argparse.ArgumentParser) -> None:
    _net(p)
    p.add_argument("id", type=_int_arg, metavar="LINK")
    p.add_argument("path", metavar="PATH", help="dpid/port-dpid/port,... between its ends")
    _priority_arg(p, "0-65535; replaces the path with this priority, if any")


@command(
    "link-set-path", "give a manual vlink a path (highest live priority wins)", _link_path_args
)
def _link_set_path(api: Api, a: argparse.Namespace) -> Reply:
    path = f"/v1/networks/{a.net}/links/{a.id}/paths/{a.priority}"
    return api.call("PUT", path, {"path": a.path}), show_link


def _link_del_path_args(p: argparse.ArgumentParser) -> None:
    _net(p)
    p.add_argument("id", type=_int_arg, metavar="LINK")
    _priority_arg(p, "the priority of the path to remove")


@command("link-del-path", "take a path off a manual vlink", _link_del_path_args)
def _link_del_path(api: Api, a: argparse.Namespace) -> Reply:
    return api.call("DELETE", f"/v1/networks/{a.net}/links/{a.id}/paths/{a.priority}"), None


def _id_args(p: argparse.ArgumentParser) -> None:
    _net(p)
    p.add_argument("id", type=_int_arg, metavar="ID")


@command("link-del", "remove a vlink", _id_args)
def _link_del(api: Api, a: argparse.Namespace) -> Reply:
    return api.call("DELETE", f"/v1/networks/{a.net}/links/{a.id}"), None


def _host_add_args(p: argparse.ArgumentParser) -> None:
    _vdpid_args(p)
    p.add_argument("vport", type=_int_arg, metavar="VPORT")
    p.add_argument("mac", metavar="MAC")


@command("host-add", "attach a host MAC to an edge vport", _host_add_args)
def _host_add(api: Api, a: argparse.Namespace) -> Reply:
    body = {"vdpid": a.vdpid, "vport": a.vport, "mac": a.mac}
    return api.call("POST", f"/v1/networks/{a.net}/hosts", body), show_host


@command("host-del", "detach a host", _id_args)
def _host_del(api: Api, a: argparse.Namespace) -> Reply:
    return api.call("DELETE", f"/v1/networks/{a.net}/hosts/{a.id}"), None


@command("host-show", "show one host (its physical location: admin only)", _id_args)
def _host_show(api: Api, a: argparse.Namespace) -> Reply:
    return api.call("GET", f"/v1/networks/{a.net}/hosts/{a.id}"), show_host


def _host_move_args(p: argparse.ArgumentParser) -> None:
    _id_args(p)
    p.add_argument("dpid", type=_dpid_arg, metavar="DPID", help="physical dpid it is on now")
    p.add_argument("port", type=_int_arg, metavar="PORT", help="its physical edge port there")


@command("host-move", "a host is now on another physical edge port (admin: a migrated VM)",
         _host_move_args)  # fmt: skip
def _host_move(api: Api, a: argparse.Namespace) -> Reply:
    body = {"dpid": a.dpid, "port": a.port}
    return api.call("POST", f"/v1/networks/{a.net}/hosts/{a.id}/move", body), show_host


@command("status", "show the daemon's status (admin)")
def _status(api: Api, a: argparse.Namespace) -> Reply:
    return api.call("GET", "/v1/status"), show_status


# --- dedicated bridges: nodes, DNB/CNB networks, VMs -------------------------------------------
def show_nodes(ns: list[dict[str, Any]]) -> str:
    cols = ["name", "index", "transport_ip", "ovsdb"]
    return format_table(cols, [[n.get(c) for c in cols] for n in ns])


def show_dnets(ns: list[dict[str, Any]]) -> str:
    cols = [
        "id",
        "tenant_id",
        "mode",
        "segmentation_id",
        "local_vid",
        "endpoint_subnet",
        "controller",
        "nodes",
        "vms",
    ]
    return format_table(cols, [[n.get(c) for c in cols] for n in ns])


def show_vms(vs: list[dict[str, Any]]) -> str:
    cols = ["network", "node", "mac", "ip", "interface"]
    return format_table(cols, [[v.get(c) for c in cols] for v in vs])


def _record(d: dict[str, Any]) -> str:
    return format_record(list(d.items()))


def _node_add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name")
    p.add_argument("ovsdb", help="unix:/PATH/db.sock or tcp:IP:PORT")
    p.add_argument("transport_ip", help="the node's transport address, IP/PREFIX")
    p.add_argument("--transport-port", default="eth1", metavar="IF")
    p.add_argument("--netns", metavar="NS", help="namespace of an emulated node")
    p.add_argument("--rundir", metavar="DIR", help="OVS run directory (default: the socket's)")


@command("node-add", "register a compute node by its OVSDB endpoint (admin)", _node_add_args)
def _node_add(api: Api, a: argparse.Namespace) -> Reply:
    body = {
        "name": a.name,
        "ovsdb": a.ovsdb,
        "transport_ip": a.transport_ip,
        "transport_port": a.transport_port,
        "netns": a.netns,
        "rundir": a.rundir,
    }
    return api.call("POST", "/v1/nodes", body), _record


@command("node-list", "list compute nodes")
def _node_list(api: Api, a: argparse.Namespace) -> Reply:
    return api.call("GET", "/v1/nodes"), show_nodes


@command("node-show", "a node's bridges and tunnels (admin)", lambda p: p.add_argument("name"))
def _node_show(api: Api, a: argparse.Namespace) -> Reply:
    return api.call("GET", f"/v1/nodes/{a.name}"), _record


@command("node-del", "unregister a node without VMs (admin)", lambda p: p.add_argument("name"))
def _node_del(api: Api, a: argparse.Namespace) -> Reply:
    return api.call("DELETE", f"/v1/nodes/{a.name}"), None


def _dnet_add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", help="network id: lower-case letters/digits, at most 9")
    p.add_argument("--mode", choices=["dedicated", "common"], default="dedicated")
    p.add_argument("--tenant", type=_int_arg, metavar="ID", help="owner (admin only)")
    p.add_argument("--segmentation-id", type=_int_arg, metavar="KEY", help="GRE key (admin)")
    p.add_argument("--endpoint-subnet", metavar="CIDR", help="endpoint subnet (admin)")


@command("dnet-add", "create a DNB (or CNB, --mode common) network", _dnet_add_args)
def _dnet_add(api: Api, a: argparse.Namespace) -> Reply:
    body: dict[str, Any] = {"id": a.id, "mode": a.mode}
    for key, value in (
        ("tenant_id", a.tenant),
        ("segmentation_id", a.segmentation_id),
        ("endpoint_subnet", a.endpoint_subnet),
    ):
        if value is not None:
            body[key] = value
    return api.call("POST", "/v1/dnb/networks", body), _record


@command("dnet-list", "list DNB/CNB networks")
def _dnet_list(api: Api, a: argparse.Namespace) -> Reply:
    return api.call("GET", "/v1/dnb/networks"), show_dnets


@command("dnet-show", "show a DNB/CNB network", lambda p: p.add_argument("id"))
def _dnet_show(api: Api, a: argparse.Namespace) -> Reply:
    return api.call("GET", f"/v1/dnb/networks/{a.id}"), _record


@command("dnet-del", "delete a network without VMs", lambda p: p.add_argument("id"))
def _dnet_del(api: Api, a: argparse.Namespace) -> Reply:
    return api.call("DELETE", f"/v1/dnb/networks/{a.id}"), None


def _vm_attach_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("net", metavar="NET")
    p.add_argument("node", metavar="NODE")
    p.add_argument("interface", metavar="IFACE", help="the VM's tap on the node")
    p.add_argument("mac", metavar="MAC")
    p.add_argument("ip", metavar="IP/PREFIX")


@command("vm-attach", "plug a VM's tap on NODE into network NET", _vm_attach_args)
def _vm_attach(api: Api, a: argparse.Namespace) -> Reply:
    body = {"node": a.node, "interface": a.interface, "mac": a.mac, "ip": a.ip}
    return api.call("POST", f"/v1/dnb/networks/{a.net}/vms", body), _record


def _vm_detach_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("net", metavar="NET")
    p.add_argument("mac", metavar="MAC")


@command("vm-detach", "unplug a VM (by MAC) from network NET", _vm_detach_args)
def _vm_detach(api: Api, a: argparse.Namespace) -> Reply:
    return api.call("DELETE", f"/v1/dnb/networks/{a.net}/vms/{a.mac}"), _record


@command("vm-list", "list a network's VMs", lambda p: p.add_argument("net", metavar="NET"))
def _vm_list(api: Api, a: argparse.Namespace) -> Reply:
    return api.call("GET", f"/v1/dnb/networks/{a.net}/vms"), show_vms


def _dnet_ctl_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("net", metavar="NET")
    p.add_argument("target", metavar="TARGET", help="tcp:IP:PORT, or 'none' to remove")


@command("dnet-set-controller", "point NET's dedicated bridges at a controller", _dnet_ctl_args)
def _dnet_set_controller(api: Api, a: argparse.Namespace) -> Reply:
    target = None if a.target == "none" else a.target
    return api.call("PUT", f"/v1/dnb/networks/{a.net}/controller", {"target": target}), _record


def _dport_add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("net", metavar="NET")
    p.add_argument("node", metavar="NODE")
    p.add_argument("name", metavar="NAME")
    p.add_argument("kind", choices=["gre", "vxlan", "geneve", "internal"])
    p.add_argument("--remote-ip", metavar="IP")
    p.add_argument("--key", type=_int_arg)


@command("dport-add", "add a tenant port/tunnel on NET's bridge on NODE", _dport_add_args)
def _dport_add(api: Api, a: argparse.Namespace) -> Reply:
    body: dict[str, Any] = {"node": a.node, "name": a.name, "kind": a.kind}
    if a.remote_ip is not None:
        body["remote_ip"] = a.remote_ip
    if a.key is not None:
        body["key"] = a.key
    return api.call("POST", f"/v1/dnb/networks/{a.net}/ports", body), _record


def _dport_del_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("net", metavar="NET")
    p.add_argument("node", metavar="NODE")
    p.add_argument("name", metavar="NAME")


@command("dport-del", "remove a tenant port", _dport_del_args)
def _dport_del(api: Api, a: argparse.Namespace) -> Reply:
    return api.call("DELETE", f"/v1/dnb/networks/{a.net}/ports/{a.node}/{a.name}"), None


@command("dnb-equations", "bridges and tunnels on the nodes vs the paper's equations (admin)")
def _dnb_equations(api: Api, a: argparse.Namespace) -> Reply:
    return api.call("GET", "/v1/dnb/equations"), lambda r: json.dumps(r, indent=2)


# --- main ------------------------------------------------------------------------------------
def _global_options(p: argparse.ArgumentParser, defaults: bool) -> None:
    """Global options, accepted before or after the command (as ovs-vsctl accepts them)."""
    sup = argparse.SUPPRESS
    p.add_argument(
        "--url",
        default=os.environ.get("TVCTL_URL", DEFAULT_URL) if defaults else sup,
        help=f"API address (env TVCTL_URL, default {DEFAULT_URL})",
    )
    p.add_argument(
        "--token",
        default=os.environ.get("TVCTL_TOKEN") if defaults else sup,
        help="tenant or admin token (env TVCTL_TOKEN)",
    )
    p.add_argument(
        "--format",
        choices=["table", "json"],
        default="table" if defaults else sup,
        help="output format (default table)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tvctl",
        description="Manage tenantvisor tenants and virtual networks over its REST API.",
        epilog="dpids may be given in decimal, 0x-hex or colon hex (00:00:00:00:00:00:00:01).",
    )
    _global_options(parser, defaults=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, (_fn, help_text, add_args) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        _global_options(p, defaults=False)
        add_args(p)
    return parser


def _glue_token(argv: list[str]) -> list[str]:
    """Turn `--token VALUE` into `--token=VALUE`.

    Tokens are URL-safe base64 and may begin with '-', which argparse would take for an
    option and then complain that --token has no value.
    """
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--token" and i + 1 < len(argv):
            out.append(f"--token={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    """Run one command; 0 on success, 1 (with `tvctl: <why>` on stderr) on any failure."""
    try:
        args = build_parser().parse_args(_glue_token(sys.argv[1:] if argv is None else argv))
        fn = _COMMANDS[args.command][0]
        api = Api(args.url, args.token)
        result, render = fn(api, args)
        if args.format == "json":
            if result is not None:
                print(json.dumps(result, indent=2))
        elif render is not None and result is not None:
            print(render(result))
        return 0
    except CliError as exc:
        print(f"tvctl: {exc}", file=sys.stderr)
        return 1
    except SystemExit as exc:  # --help / --version from argparse
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        print("tvctl: interrupted", file=sys.stderr)
        return 1
    except Exception as exc:  # a reply we did not expect: still one line, no traceback
        print(f"tvctl: unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

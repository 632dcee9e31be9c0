"""`tenantvisor bench reconnect`: a pswitch's control connection flaps under traffic.

Set-up: the failover benchmark's ring (`testbed/ringnet.py`): `ping -i 0.01` h1 -> h3 crosses
vlink AC, i.e. s1 (head-end, hosting vswitch A), s4 (transit) and s3.  One pswitch at a time
loses its connection to the daemon for `--down` seconds and gets it back, `--flaps` times:
the bridge is pointed at a socket nobody listens on and back (`Fabric.disconnect_controller`;
not `del-controller`, which makes Open vSwitch flush the bridge's flows by itself), so the
switch, in `fail_mode=secure`, keeps forwarding with the rules it has.

Per flap:
* pings lost (goal 0) and the outage (`testbed/pingmon.py`);
* FLOW_MODs the daemon sent to that pswitch for the reconnect (goal 0 when nothing
  changed), from `GET /v1/status` (`flow_mods_sent` per pswitch; the same counter as
  `tenantvisor_pswitch_flow_mods_sent` in `/metrics`).  The counter belongs to a pswitch
  session: if it is lower after the flap than before, the daemon started a new count with the
  new connection and the whole new value was sent for the reconnect;
* what the pswitch itself saw, independently of the daemon's counters: flow table changes
  reported by `ovs-ofctl monitor` (ADDED / DELETED / MODIFIED), and rules whose `duration`
  did not keep counting (re-added) or that vanished (`testbed/flowwatch.py`);
* messages the tenant's controller got, and how long the daemon took to see the pswitch
  gone and back.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

from tenantvisor.bench.dnb import Progress
from tenantvisor.bench.failover import percentile
from tenantvisor.bench.report import closing_lines, emit
from tenantvisor.testbed.flowwatch import FlowMonitor, dump_flows, younger
from tenantvisor.testbed.pingmon import PingMonitor
from tenantvisor.testbed.ringnet import RingNet, ring_network

REFERENCE = (
    "No paper figure to compare with: neither the Libera nor the OpenVirteX paper measures a "
    "pswitch reconnect. The goal is DESIGN.md's: the program stage never wipes a switch, so "
    "a reconnect changes nothing that is right."
)


@dataclass
class Config:
    flaps: int = 10
    down: float = 1.0  # seconds disconnected
    settle: float = 1.5  # seconds after the daemon has it back, before counting
    roles: tuple[str, ...] = ("edge", "transit")
    interval: float = 0.01


QUICK = Config(flaps=3, down=0.5, settle=1.0)


def flow_mods_for_reconnect(
    before: int | None, after: int | None, restarted: bool = False
) -> int | None:
    """FLOW_MODs sent for one reconnect, from the pswitch's `flow_mods_sent` read before and
    after.

    The daemon may count per connection: a value lower after than before shows the count
    restarted with the new session, and all of it was sent for the reconnect; `restarted`
    says so when an earlier flap proved it (a restarted count equal to the old one would
    otherwise read as 0).  Otherwise the counter is taken as cumulative: the difference."""
    if before is None or after is None:
        return None
    return after if restarted or after < before else after - before


def role_switches(net: RingNet) -> dict[str, str]:
    """edge: the head-end of h1 -> h3 (hosts vswitch A); transit: the middle of AC's path."""
    path = net.path("AC")
    if not path or len(path) < 2:
        raise RuntimeError(f"vlink AC should cross a transit pswitch, its path is {path}")
    return {"edge": path[0][0], "transit": path[0][1]}


@dataclass
class Counting:
    """What the run learned about the daemon's `flow_mods_sent`: per session or not."""

    per_session: bool = False


def flap(
    net: RingNet, pm: PingMonitor, mon: FlowMonitor, sw: str, cfg: Config, counting: Counting
) -> dict[str, Any]:
    if not pm.wait_replies(5, time.time(), timeout=10):
        raise RuntimeError(net.explain(f"no replies h1 -> h3 before flapping {sw}"))
    before_status = net.pswitch(sw) or {}
    fm0 = before_status.get("flow_mods_sent")
    flows0 = dump_flows(net.fab, sw)
    t_dump0 = time.time()
    t0 = time.time()
    net.fab.disconnect_controller([sw])
    gone = net.wait_pswitch(sw, present=False, timeout=cfg.down)
    time.sleep(max(0.0, t0 + cfg.down - time.time()))
    t_back = time.time()
    net.fab.reconnect_controller([sw])
    # the daemon's view: OVS's own is_connected column lags by seconds
    back = net.wait_pswitch(sw, present=True, timeout=20)
    time.sleep(cfg.settle)
    after_status = net.pswitch(sw) or {}
    fm1 = after_status.get("flow_mods_sent")
    flows1 = dump_flows(net.fab, sw)
    t_dump1 = t_end = time.time()
    time.sleep(0.2)
    w = pm.window(t0, t_end)
    if fm0 is not None and fm1 is not None and fm1 < fm0:
        counting.per_session = True
    return {
        "switch": sw,
        **w.as_dict(),
        "flow_mods": flow_mods_for_reconnect(fm0, fm1, counting.per_session and gone is not None),
        "flow_mods_sent_before": fm0,
        "flow_mods_sent_after": fm1,
        "table_changes": mon.since(t0),
        "rules_not_kept": younger(flows0, flows1, t_dump1 - t_dump0),
        "rules": len(flows0),
        "tenant_messages": [e.name for e in net.ctl.since(t0, t_end)],
        "daemon_saw_gone_ms": None if gone is None else round(gone * 1e3, 1),  # from the cut
        "reconnect_ms": None if back is None else round(back * 1e3, 1),
        "disconnected_s": round(t_back - t0, 3),
        "status_after": {k: v for k, v in after_status.items() if k not in ("dpid", "peer")},
    }


def run(cfg: Config, progress: bool = True) -> dict[str, Any]:
    t0 = time.monotonic()
    bar = Progress(1 + cfg.flaps * len(cfg.roles), progress)
    result: dict[str, Any] = {
        "benchmark": "reconnect",
        "topology": "ring of 4 pswitches",
        "flaps": cfg.flaps,
        "down_s": cfg.down,
        "settle_s": cfg.settle,
        "ping_interval_s": cfg.interval,
        "roles": {},
    }
    with ring_network(strict_backup=False, log_level="warning") as net:
        bar.step("ring, daemon, tenant and controller up")
        switches = role_switches(net)
        counting = Counting()
        result["path"] = " ".join(f"{a}-{b}" for a, b in net.path("AC") or [])
        pm = PingMonitor(net.fab.host("h1").netns, net.host_ip("h3"), cfg.interval).start()
        try:
            for role in cfg.roles:
                sw = switches[role]
                flaps = []
                with FlowMonitor(net.fab, sw) as mon:
                    for i in range(cfg.flaps):
                        f = flap(net, pm, mon, sw, cfg, counting)
                        f["i"] = i
                        flaps.append(f)
                        bar.step(
                            f"{role} {sw} flap {i + 1}/{cfg.flaps}: lost {f['lost']}, "
                            f"{f['flow_mods']} FLOW_MODs"
                        )
                result["roles"][role] = summarize(sw, flaps)
        finally:
            pm.stop()
        result["ping_spacing_ms"] = round(pm.spacing() * 1e3, 2)
        result["duplicates"] = pm.duplicates
    roles = result["roles"].values()
    result["goals"] = {
        "no_ping_lost": all(r["lost_total"] == 0 for r in roles),
        "no_flow_mod_on_reconnect": all(r["flow_mods_max"] == 0 for r in roles),
        "flow_table_untouched": all(
            r["table_changes_total"] == 0 and r["rules_not_kept_total"] == 0 for r in roles
        ),
    }
    result["reference"] = REFERENCE
    result["seconds"] = round(time.monotonic() - t0, 1)
    return result


def summarize(sw: str, flaps: list[dict[str, Any]]) -> dict[str, Any]:
    lost = [float(f["lost"]) for f in flaps]
    fms = [float(f["flow_mods"]) for f in flaps if f["flow_mods"] is not None]
    back = [f["reconnect_ms"] for f in flaps if f["reconnect_ms"] is not None]
    return {
        "switch": sw,
        "flaps": flaps,
        "lost_total": int(sum(lost)),
        "lost_p50": percentile(lost, 50),
        "lost_max": max(lost, default=None),
        "outage_ms_p50": percentile([f["outage_ms"] for f in flaps], 50),
        "outage_ms_max": max((f["outage_ms"] for f in flaps), default=None),
        "flow_mods_p50": percentile(fms, 50),
        "flow_mods_max": max(fms, default=None) if len(fms) == len(flaps) else None,
        "table_changes_total": sum(len(f["table_changes"]) for f in flaps),
        "rules_not_kept_total": sum(len(f["rules_not_kept"]) for f in flaps),
        "tenant_saw": sum(1 for f in flaps if f["tenant_messages"]),
        "reconnect_ms_p50": percentile(back, 50),
    }


def _fmt(x: float | None, spec: str = ".0f") -> str:
    return "-" if x is None else format(x, spec)


def _role(role: str, v: dict[str, Any]) -> str:
    return f"{role} ({v['switch']})"


def table(r: dict[str, Any]) -> str:
    lines = [
        f"tenantvisor bench reconnect: {r['topology']}, ping -i {r['ping_interval_s']:g} h1 -> h3 "
        f"over {r['path']} (replies every {r['ping_spacing_ms']:.1f} ms)",
        f"{r['flaps']} flaps per pswitch, {r['down_s']:g} s disconnected each, counted "
        f"{r['settle_s']:g} s after the daemon has it back",
        "",
        f"{'':30}" + "".join(f"{_role(k, v):>18}" for k, v in r["roles"].items()) + f"{'goal':>8}",
    ]
    rows = [
        ("pings lost, total", "lost_total", ".0f", "0"),
        ("pings lost per flap, max", "lost_max", ".0f", "0"),
        ("outage p50 / flap (ms)", "outage_ms_p50", ".0f", ""),
        ("FLOW_MODs per reconnect, p50", "flow_mods_p50", ".0f", "0"),
        ("FLOW_MODs per reconnect, max", "flow_mods_max", ".0f", "0"),
        ("flow table changes (OVS)", "table_changes_total", ".0f", "0"),
        ("rules re-added or gone (OVS)", "rules_not_kept_total", ".0f", "0"),
        ("flaps the tenant saw", "tenant_saw", ".0f", "0"),
        ("reconnect time p50 (ms)", "reconnect_ms_p50", ".0f", ""),
    ]
    for label, key, spec, goal in rows:
        lines.append(
            f"{label:30}"
            + "".join(f"{_fmt(v[key], spec):>18}" for v in r["roles"].values())
            + f"{goal:>8}"
        )
    for role, v in r["roles"].items():
        changes = [c for f in v["flaps"] for c in f["table_changes"]][:3]
        for c in changes:
            lines.append(f"  {role}: {c}")
        msgs = sorted({m for f in v["flaps"] for m in f["tenant_messages"]})
        if msgs:
            lines.append(f"  {role}: the tenant got {', '.join(msgs)}")
    lines += closing_lines(r, [
        ("no_ping_lost", "no ping lost"),
        ("no_flow_mod_on_reconnect", "no FLOW_MOD on a reconnect"),
        ("flow_table_untouched", "flow tables untouched"),
    ])  # fmt: skip
    return "\n".join(lines)


def plot(r: dict[str, Any], path: str) -> None:
    """Per flap and pswitch: pings lost, outage, FLOW_MODs for the reconnect."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    panels = [
        ("lost", "pings lost per flap (goal 0)", "pings"),
        ("outage_ms", "outage per flap", "ms"),
        ("flow_mods", "FLOW_MODs sent for the reconnect (goal 0)", "FLOW_MODs"),
    ]
    n = max(1, len(r["roles"]))
    width = 0.8 / n
    for ax, (key, title, unit) in zip(axes, panels, strict=True):
        top = 1.0
        for k, (role, v) in enumerate(r["roles"].items()):
            xs = [f["i"] + 1 + (k - (n - 1) / 2) * width for f in v["flaps"]]
            ys = [float(f[key] or 0) for f in v["flaps"]]
            top = max(top, *ys)
            ax.bar(xs, ys, width, label=f"{role} ({v['switch']})")
        ax.set(title=title, xlabel="flap", ylabel=unit, ylim=(0, top * 1.15))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if key != "outage_ms":
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run_reconnect(
    flaps: int | None = None,
    quick: bool = False,
    role: str = "both",
    down: float | None = None,
    as_json: bool = False,
    plot_path: str | None = None,
    interval: float | None = None,
) -> int:
    base = QUICK if quick else Config()
    cfg = Config(
        flaps=flaps if flaps is not None else base.flaps,
        down=down if down is not None else base.down,
        settle=base.settle,
        roles=("edge", "transit") if role == "both" else (role,),
        interval=interval if interval is not None else base.interval,
    )
    if cfg.flaps < 1 or cfg.down <= 0 or not 0.001 <= cfg.interval <= 1:
        print(
            "tenantvisor bench: --flaps must be >= 1, --down > 0, --interval 0.001-1 s",
            file=sys.stderr,
        )
        return 2
    result = run(cfg)
    return emit(
        result, plot=plot, table=table, plot_path=plot_path, as_json=as_json,
        default_plot="bench-reconnect.png",
    )  # fmt: skip


__all__ = ["Config", "flow_mods_for_reconnect", "run", "run_reconnect"]

"""`tenantvisor bench failover`: a vlink with a backup path under link cuts, timed by ping.

Set-up (`testbed/ringnet.py`): a ring of four pswitches, the daemon as its own process, one
tenant whose vswitches A (on s1), B (s2) and C (s3) are joined by vlinks AB and AC created with
`algorithm: "spf"` and `backup_num: 1`, one host behind each vswitch, and a proactive tenant
controller of the bench's own that installs its rules once and then records every message
its vswitches send (PORT_STATUS, FLOW_REMOVED, PACKET_IN, ...).

Series:
* **local** (always): `ping -i 0.01` h1 -> h2 over AB, whose primary path is the direct link
  s1-s2; that link is cut and restored `cuts` times.  It is local to the head-end of both
  directions (s1 for h1 -> h2, s2 for the replies): fast-failover groups there can switch
  without the hypervisor.
* **remote** (`--remote`): h1 -> h3 over AC (primary s1-s4-s3); the cut link s4-s3 is not
  adjacent to s1, the head-end of h1 -> h3, so that direction needs the hypervisor (or a
  remote notification) to move.

Per cut: packets lost and outage (`testbed/pingmon.py`: the longest gap between replies minus
the usual spacing), whether the tenant's controller got any message, how long Open vSwitch
took to report both ports down, and the vlink's path as the API reports it during the cut;
the same for the restore ("revert").  Goals: no message to the tenant, and under 50 ms of
outage (p50) for a cut local to the head-end.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from tenantvisor.bench.dnb import Progress
from tenantvisor.bench.report import closing_lines, emit
from tenantvisor.testbed.pingmon import PingMonitor
from tenantvisor.testbed.ringnet import RingNet, ring_network

GOAL_LOCAL_OUTAGE_MS = 50.0
REFERENCE = (
    "No paper figure to compare with: OpenVirteX computes backup paths for vlinks "
    "(connectLink's backup_num, switched over when the primary fails) but neither its paper "
    "nor Libera's reports a failover time; Libera has no failover figure."
)


@dataclass
class Config:
    cuts: int = 10
    hold: float = 2.0  # seconds a link stays cut, then restored
    remote: bool = False
    iperf: bool = False
    interval: float = 0.01  # ping -i


QUICK = Config(cuts=3, hold=1.0)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _wait_link_down(net: RingNet, a: str, b: str, timeout: float = 1.0) -> float | None:
    """Time (ms, from now) until OVS reports LINK_DOWN on both ends of a-b; None if never."""
    t0 = time.monotonic()
    ends = net.fab.link_ports(a, b)
    while time.monotonic() - t0 < timeout:
        if all(net.fab.port_state(sw, port)[1] for sw, port in ends):
            return (time.monotonic() - t0) * 1e3
        time.sleep(0.002)
    return None


def _hops(path: list[tuple[str, str]] | None) -> str | None:
    if path is None:
        return None
    return " ".join(f"{a}-{b}" for a, b in path)


IPERF_RATE = "200M"
"""iperf3 TCP pacing: below what the userspace datapath carries on 2 cores, so retransmits
count the cuts, not a saturated path (unpaced, the stream alone drops pings)."""
IPERF_WARMUP = 3.0


def _iperf_start(net: RingNet, dst: str, seconds: int) -> tuple[Any, Any, float]:
    server = net.fab.host(dst).popen(["iperf3", "-s", "-1"])
    time.sleep(0.3)
    client = net.fab.host("h1").popen(
        ["iperf3", "-c", net.host_ip(dst), "-t", str(seconds), "-b", IPERF_RATE, "-i", "0.5", "-J"],
        stdout=subprocess.PIPE,
        text=True,
    )
    started = time.time()
    time.sleep(IPERF_WARMUP)  # the baseline: retransmits before any cut
    return server, client, started


def _iperf_result(client: Any, started: float, windows: list[tuple[float, float]]) -> Any:
    """Retransmits over the run, per cut (cut to end of its restore) and per second before
    the first cut (the baseline)."""
    out, _ = client.communicate(timeout=600)
    try:
        data = json.loads(out)
        intervals = [iv["sum"] for iv in data["intervals"]]
        total = int(data["end"]["sum_sent"].get("retransmits", 0))
    except (ValueError, KeyError):
        return {"error": "iperf3 gave no result"}

    def retransmits(a: float, b: float) -> int:
        return sum(
            int(s.get("retransmits", 0))
            for s in intervals
            if started + s["start"] < b and started + s["end"] > a
        )

    first = windows[0][0] if windows else started
    base_s = max(0.5, first - started - 0.5)
    mbps = [float(s["bits_per_second"]) / 1e6 for s in intervals]
    return {
        "rate": IPERF_RATE,
        "retransmits": total,
        "retransmits_per_s_before_cuts": round(retransmits(started, first - 0.5) / base_s, 1),
        "retransmits_per_cut": [retransmits(a, b) for a, b in windows],
        "mbps_min_interval": round(min(mbps), 1) if mbps else None,
        "mbps_mean": round(sum(mbps) / len(mbps), 1) if mbps else None,
    }


def run_series(
    net: RingNet, name: str, vlink: str, dst: str, cfg: Config, progress: Progress
) -> dict[str, Any]:
    primary = net.path(vlink)
    if not primary:
        raise RuntimeError(f"vlink {vlink} has no path before the first cut")
    # local: the first hop (adjacent to both ends when the vlink is one hop long);
    # remote: the last hop, which is not adjacent to the source pswitch.
    a, b = primary[0] if name == "local" else primary[-1]
    cuts: list[dict[str, Any]] = []
    pm = PingMonitor(net.fab.host("h1").netns, net.host_ip(dst), cfg.interval).start()
    iperf = None
    windows: list[tuple[float, float]] = []
    timeline: list[tuple[float, float]] = []
    try:
        if cfg.iperf:
            seconds = int(IPERF_WARMUP + cfg.cuts * (2 * cfg.hold + 1.5)) + 3
            iperf = _iperf_start(net, dst, seconds)
        for i in range(cfg.cuts):
            if not pm.wait_replies(5, time.time(), timeout=10):
                raise RuntimeError(net.explain(f"{name}: no replies from {dst} before cut {i}"))
            t_cut = net.cut(a, b)
            ovs_ms = _wait_link_down(net, a, b)
            time.sleep(max(0.0, t_cut + 0.8 * cfg.hold - time.time()))
            during = _hops(net.path(vlink))
            time.sleep(max(0.0, t_cut + cfg.hold - time.time()))
            t_restore = net.restore(a, b)
            time.sleep(cfg.hold)
            after = _hops(net.path(vlink))
            t_end = time.time()
            time.sleep(0.3)  # let the last replies arrive before reading the window
            cut_w, rev_w = pm.window(t_cut, t_restore), pm.window(t_restore, t_end)
            windows.append((t_cut, t_end))
            if i == 0:  # one cut's replies, for the plot's timeline
                timeline = [
                    (round((t - t_cut) * 1e3, 2), round(rtt * 1e3, 3))
                    for t, rtt in pm.replies_between(t_cut - 0.5, t_end)
                ]
            cuts.append(
                {
                    "i": i,
                    "link": f"{a}-{b}",
                    "cut": {
                        **cut_w.as_dict(),
                        "tenant_messages": [e.name for e in net.ctl.since(t_cut, t_restore)],
                        "ovs_link_down_ms": None if ovs_ms is None else round(ovs_ms, 1),
                        "path": during,
                    },
                    "revert": {
                        **rev_w.as_dict(),
                        "tenant_messages": [e.name for e in net.ctl.since(t_restore, t_end)],
                        "path": after,
                    },
                }
            )
            progress.step(
                f"{name} cut {i + 1}/{cfg.cuts}: outage {cut_w.outage_ms:.0f} ms, "
                f"revert {rev_w.outage_ms:.0f} ms"
            )
    finally:
        pm.stop()
    out: dict[str, Any] = {
        "vlink": vlink,
        "ping": f"h1 -> {dst}",
        "primary_path": _hops(primary),
        "cut_link": f"{a}-{b}",
        "cuts": cuts,
        "ping_spacing_ms": round(pm.spacing() * 1e3, 2),
        "duplicates": pm.duplicates,
        "first_cut_replies": {"t_ms": [t for t, _ in timeline], "rtt_ms": [r for _, r in timeline]},
        "hold_ms": cfg.hold * 1e3,
    }
    if iperf is not None:
        server, client, started = iperf
        out["iperf3"] = _iperf_result(client, started, windows)
        server.kill()
    for phase in ("cut", "revert"):
        outages = [c[phase]["outage_ms"] for c in cuts]
        lost = [c[phase]["lost"] for c in cuts]
        out[phase] = {
            "outage_ms_p50": percentile(outages, 50),
            "outage_ms_p99": percentile(outages, 99),
            "outage_ms_max": max(outages, default=None),
            "lost_p50": percentile([float(x) for x in lost], 50),
            "lost_total": sum(lost),
            "tenant_saw": sum(1 for c in cuts if c[phase]["tenant_messages"]),
        }
    return out


def run(cfg: Config, progress: bool = True) -> dict[str, Any]:
    t0 = time.monotonic()
    series = ["local"] + (["remote"] if cfg.remote else [])
    bar = Progress(1 + cfg.cuts * len(series), progress)
    result: dict[str, Any] = {
        "benchmark": "failover",
        "topology": "ring of 4 pswitches",
        "cuts": cfg.cuts,
        "hold_s": cfg.hold,
        "ping_interval_s": cfg.interval,
    }
    with ring_network(strict_backup=False, log_level="warning") as net:
        bar.step("ring, daemon, tenant and controller up")
        result["backup_num"] = net.backup_num
        result["notes"] = list(net.notes)
        result["series"] = {}
        if "local" in series:
            result["series"]["local"] = run_series(net, "local", "AB", "h2", cfg, bar)
        if "remote" in series:
            result["series"]["remote"] = run_series(net, "remote", "AC", "h3", cfg, bar)
    local = result["series"]["local"]
    p50 = local["cut"]["outage_ms_p50"]
    result["goals"] = {
        "no_tenant_message": all(
            s[ph]["tenant_saw"] == 0 for s in result["series"].values() for ph in ("cut", "revert")
        ),
        "local_outage_p50_under_50ms": p50 is not None and p50 < GOAL_LOCAL_OUTAGE_MS,
    }
    result["reference"] = REFERENCE
    result["seconds"] = round(time.monotonic() - t0, 1)
    return result


def _fmt(x: float | None, spec: str = ".0f") -> str:
    return "-" if x is None else format(x, spec)


def table(r: dict[str, Any]) -> str:
    lines = [
        f"tenantvisor bench failover: {r['topology']}, vlinks with backup_num={r['backup_num']}, "
        f"{r['cuts']} cuts held {r['hold_s']:g} s, ping -i {r['ping_interval_s']:g}",
    ]
    lines += [f"note: {n}" for n in r.get("notes", [])]
    for name, s in r["series"].items():
        lines += [
            "",
            f"{name}: {s['ping']} over vlink {s['vlink']} (primary {s['primary_path']}), "
            f"cutting {s['cut_link']}; replies every {s['ping_spacing_ms']:.1f} ms",
            f"{'':26}{'p50':>8}{'p99':>8}{'max':>8}{'goal':>8}",
        ]
        for phase, label in (("cut", "cut"), ("revert", "restore")):
            x = s[phase]
            goal = f"<{GOAL_LOCAL_OUTAGE_MS:.0f}" if (name, phase) == ("local", "cut") else ""
            lines.append(
                f"{label + ' outage (ms)':26}{_fmt(x['outage_ms_p50']):>8}"
                f"{_fmt(x['outage_ms_p99']):>8}{_fmt(x['outage_ms_max']):>8}{goal:>8}"
            )
            lost = [c[phase]["lost"] for c in s["cuts"]]
            lines.append(
                f"{label + ' pings lost':26}{_fmt(percentile([float(v) for v in lost], 50)):>8}"
                f"{_fmt(percentile([float(v) for v in lost], 99)):>8}"
                f"{_fmt(float(max(lost, default=0))):>8}{'0' if phase == 'revert' else '':>8}"
            )
            saw = f"{x['tenant_saw']}/{len(s['cuts'])}"
            lines.append(f"{label + 's the tenant saw':26}{saw:>8}{'':>16}{'0':>8}")
        downs = [c["cut"]["ovs_link_down_ms"] for c in s["cuts"] if c["cut"]["ovs_link_down_ms"]]
        lines.append(
            f"OVS reports both ports LINK_DOWN after {_fmt(percentile(downs, 50))} ms (p50)"
        )
        paths = sorted({str(c["cut"]["path"]) for c in s["cuts"]})
        lines.append(f"path during the cuts (API): {', '.join(paths)}")
        seen = sorted(
            {m for c in s["cuts"] for ph in ("cut", "revert") for m in c[ph]["tenant_messages"]}
        )
        if seen:
            lines.append(f"messages the tenant got: {', '.join(seen)}")
        ip = s.get("iperf3")
        if ip is not None and "error" not in ip:
            lines.append(
                f"iperf3 TCP at {ip['rate']}b/s: {ip['mbps_mean']} Mb/s mean, "
                f"{ip['mbps_min_interval']} Mb/s worst 0.5 s; retransmits per cut "
                f"{ip['retransmits_per_cut']} ({ip['retransmits_per_s_before_cuts']}/s before)"
            )
        elif ip is not None:
            lines.append(f"iperf3: {ip['error']}")
    lines += closing_lines(r, [
        ("no_tenant_message", "no message to the tenant"),
        ("local_outage_p50_under_50ms", "local cut outage p50 < 50 ms"),
    ])  # fmt: skip
    return "\n".join(lines)


def plot(r: dict[str, Any], path: str) -> None:
    """Per series: outage of every cut and restore (top), replies around the first cut
    (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(r["series"])
    fig, axes = plt.subplots(2, len(names), figsize=(6.5 * len(names), 7), squeeze=False)
    for col, name in enumerate(names):
        s = r["series"][name]
        ax = axes[0][col]
        xs = [c["i"] + 1 for c in s["cuts"]]
        cut = [c["cut"]["outage_ms"] for c in s["cuts"]]
        rev = [c["revert"]["outage_ms"] for c in s["cuts"]]
        ax.bar([x - 0.2 for x in xs], cut, 0.4, label="cut", color="#c44")
        ax.bar([x + 0.2 for x in xs], rev, 0.4, label="restore", color="#2a7")
        if name == "local":
            ax.axhline(GOAL_LOCAL_OUTAGE_MS, color="#888", lw=0.8, ls="--", label="goal 50 ms")
        for phase, dx in (("cut", -0.2), ("revert", 0.2)):
            seen = [(x + dx, c[phase]["outage_ms"]) for x, c in zip(xs, s["cuts"], strict=True)
                    if c[phase]["tenant_messages"]]  # fmt: skip
            if seen:
                ax.plot([p[0] for p in seen], [max(p[1], 1) * 1.3 for p in seen], "kv",
                        ms=5, ls="none", label="tenant got a message")  # fmt: skip
        if max(cut + rev, default=0) > 10 * GOAL_LOCAL_OUTAGE_MS:
            ax.set_yscale("symlog", linthresh=10)  # seconds-long outages next to milliseconds
        ax.set(title=f"{name}: cut {s['cut_link']} ({s['ping']})", xlabel="cut",
               ylabel="outage (ms)")  # fmt: skip
        ax.set_xticks(xs)
        handles, labels = ax.get_legend_handles_labels()
        uniq = dict(zip(labels, handles, strict=True))
        ax.legend(uniq.values(), uniq.keys(), fontsize=8)
        ax = axes[1][col]
        tl = s["first_cut_replies"]
        ax.plot(tl["t_ms"], tl["rtt_ms"], ".", ms=3, color="#247")
        ax.axvline(0, color="#c44", lw=1, label="cut")
        ax.axvline(s["hold_ms"], color="#2a7", lw=1, label="restore")
        ax.set(title="echo replies around the first cut", xlabel="ms since the cut",
               ylabel="RTT (ms)")  # fmt: skip
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run_failover(
    cuts: int | None = None,
    quick: bool = False,
    remote: bool = False,
    iperf: bool = False,
    as_json: bool = False,
    plot_path: str | None = None,
    hold: float | None = None,
    interval: float | None = None,
) -> int:
    base = QUICK if quick else Config()
    cfg = Config(
        cuts=cuts if cuts is not None else base.cuts,
        hold=hold if hold is not None else base.hold,
        remote=remote,
        iperf=iperf,
        interval=interval if interval is not None else base.interval,
    )
    if cfg.cuts < 1 or cfg.hold <= 0 or not 0.001 <= cfg.interval <= 1:
        print(
            "tenantvisor bench: --cuts must be >= 1, --hold > 0, --interval 0.001-1 s",
            file=sys.stderr,
        )
        return 2
    result = run(cfg)
    return emit(
        result, plot=plot, table=table, plot_path=plot_path, as_json=as_json,
        default_plot="bench-failover.png",
    )  # fmt: skip


__all__ = ["Config", "percentile", "run", "run_failover"]

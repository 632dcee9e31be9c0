"""`tenantvisor bench noisy-neighbour`: what a hostile tenant's forwarding loop does to
another tenant sharing the fabric, without and with data-plane limits (issue 11).

Set-up (`testbed/noisynet.py`): a ring of four pswitches, one ovs-vswitchd, the daemon as
its own process started with the admin's `--default-limits`.  Tenant A's slice holds a
cycle (vswitches on s1 and s2 joined by two vlinks, one direct, one the long way round);
tenant B has vswitches on the same two pswitches and a vlink over the same s1-s2 link.

Phases, in one run of the daemon (so the quiet baseline is the same fabric and process):

1. **quiet**: A idle (no rules); B alone.
2. **loop, no limits**: the admin exempts A (its override sets every limit to 0); A's
   controller installs FLOOD rules in both vswitches and h1 blasts broadcast frames
   into the cycle: each one circulates both ways forever.
3. **loop, limits**: A's override removed, the defaults apply; the same loop.
4. **quiet again**: A's rules deleted; the baseline once more, to show how much the
   machine itself (two shared cores) moved meanwhile.

In each phase B pings h2 -> h4 every 10 ms and runs a paced iperf3 TCP stream h2 -> h4;
reported: B's pings lost, RTT p50/p99/max, TCP throughput and retransmits, and for A the
frames/s its loop put on the shared s1 -> s2 link, ovs-vswitchd's CPU and what A's limits
dropped.  Goals: with limits, B loses no ping and its RTT p99 stays within 2x the quiet
run's.

Noise kinds (`--noise loop,control`; default `loop`): `loop` is the data plane above;
`control` is a second controller of A's (a `ptcp:` listener of A's vswitch X) hammering it
with FLOW_MODs as fast as the connection takes them, from a process of its own
(bench/hammer.py), the control channel every tenant shares.  Every phase runs all the kinds
asked for, with the same B measurements; "limits" are then the data-plane meters and the
per-connection message rate together.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tenantvisor.bench.dnb import Progress
from tenantvisor.bench.failover import percentile
from tenantvisor.bench.hammer import HammerProcess
from tenantvisor.bench.report import closing_lines, emit
from tenantvisor.hypervisor import LIMIT_POLL
from tenantvisor.testbed.noisynet import BLAST_RATE, LINK_S1_S2, NoisyNet, noisy_network
from tenantvisor.testbed.pingmon import PingMonitor

GOAL_P99_RATIO = 2.0
LOST_MS = 1000.0  # ping -W 1: what a lost request counts as in the RTT percentiles
REFERENCE = (
    "No paper figure: neither OpenVirteX nor Libera limits a tenant's data-plane rate; "
    "this repository's notes measured a hostile tenant's loop at ~86k frames/s on shared "
    "fabric links, with another tenant losing 7-9 consecutive pings (RTT up to 0.5 s)."
)
# One unit, packets/s: a loop or flood costs the shared userspace datapath per frame.  1000
# each leaves B's paced 10 Mb/s stream (~900 frames/s) room under its own limits.
DEFAULT_LIMITS = "vport_pps=1000,vlink_pps=1000"
UNLIMITED = {"vport_pps": 0, "vport_kbps": 0, "vlink_pps": 0, "vlink_kbps": 0}
# key, label, whether A is noisy, A's override set before (None: left as it is)
PHASES: tuple[tuple[str, str, bool, dict[str, int] | None], ...] = (
    ("quiet", "quiet (A idle)", False, None),
    ("unlimited", "loop, no limits", True, UNLIMITED),
    ("limited", "loop, limits", True, {}),
    ("quiet_again", "quiet again", False, None),
)


@dataclass
class Config:
    seconds: float = 20.0  # per phase, measured (after `warmup`)
    warmup: float = 2.0  # s the loop builds up (and TCP ramps) before measuring
    interval: float = 0.01  # ping -i
    rate: str = "10M"  # iperf3 -b: paced, so the quiet run is not CPU-bound itself
    limits: str = DEFAULT_LIMITS  # the daemon's --default-limits
    blast: float = BLAST_RATE  # broadcast frames/s h1 sends into A's loop
    noise: list[str] = field(default_factory=lambda: ["loop"])


QUICK = Config(seconds=6.0, warmup=1.5)


class Noise(Protocol):
    """What tenant A does to its neighbours during the noisy phases."""

    def start(self, net: NoisyNet, cfg: Config) -> None: ...

    def stop(self, net: NoisyNet) -> None: ...


class LoopNoise:
    """A forwarding loop in A's slice fed by a broadcast blast (the data plane)."""

    def start(self, net: NoisyNet, cfg: Config) -> None:
        net.start_loop(cfg.blast)

    def stop(self, net: NoisyNet) -> None:
        net.stop_loop()


class ControlNoise:
    """A second controller of A's hammers A's vswitch X with FLOW_MODs as fast as its
    connection takes them (bench/hammer.py, in a process of its own): the control plane
    every tenant shares, kept to A's message rate by back-pressure."""

    def __init__(self) -> None:
        self.proc: HammerProcess | None = None

    def start(self, net: NoisyNet, cfg: Config) -> None:
        self.proc = HammerProcess(net.hammer_url, cfg.warmup + cfg.seconds + 5, kind="flow_mod")

    def stop(self, net: NoisyNet) -> None:
        if self.proc is not None:
            self.proc.stop()
        self.proc = None


NOISES: dict[str, Callable[[], Noise]] = {"loop": LoopNoise, "control": ControlNoise}


def _iperf(net: NoisyNet, cfg: Config) -> tuple[Any, Any]:
    server = net.fab.host("h4").popen(["iperf3", "-s", "-1"])
    time.sleep(0.3)
    secs = max(1, round(cfg.warmup + cfg.seconds))
    # a loop can keep the control connection from ever opening, or cut it: give up then,
    # rather than wait out TCP's retries (the phase must end when it should)
    client = net.fab.host("h2").popen(
        ["iperf3", "-c", net.host_ip("h4"), "-t", str(secs), "-b", cfg.rate, "-i", "1", "-J",
         "--connect-timeout", "3000", "--snd-timeout", "5000"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    return server, client


def _iperf_result(server: Any, client: Any, wait: float) -> dict[str, Any]:
    out = ""
    try:
        out, _ = client.communicate(timeout=wait)
    except subprocess.TimeoutExpired:
        client.kill()
        client.wait(5)
    if server.poll() is None:
        server.kill()
    try:
        data = json.loads(out)
    except ValueError:
        return {"error": "iperf3 gave no result"}
    try:
        end = data["end"]
        return {
            "mbps": round(end["sum_received"]["bits_per_second"] / 1e6, 2),
            "retransmits": int(end["sum_sent"].get("retransmits", 0)),
        }
    except (KeyError, TypeError):
        return {"error": str(data.get("error", "iperf3 gave no result"))}


def measure(net: NoisyNet, cfg: Config, noisy: bool) -> dict[str, Any]:
    """One phase: B's ping and TCP stream, A's load on the shared link and the datapath."""
    log_at = len(net.daemon.log_text())
    dropped0 = net.limits()["dropped"]
    noises = [NOISES[n]() for n in cfg.noise] if noisy else []
    pm = PingMonitor(net.fab.host("h2").netns, net.host_ip("h4"), cfg.interval).start()
    server, client = _iperf(net, cfg)
    try:
        for noise in noises:
            noise.start(net, cfg)
        time.sleep(cfg.warmup)
        tx0, cpu0, t0 = net.tx_packets("s1", LINK_S1_S2), net.vswitchd_cpu(), time.time()
        time.sleep(cfg.seconds)
        tx1, cpu1, t1 = net.tx_packets("s1", LINK_S1_S2), net.vswitchd_cpu(), time.time()
        iperf = _iperf_result(server, client, 15.0)
        time.sleep(1.2)  # ping -W 1: the last requests are answered or given up on
        win = pm.window(t0, t1)
        rtts = [rtt * 1e3 for t, rtt in pm.replies_between(t0, t1 + 1.0) if t - rtt < t1]
    finally:
        pm.stop()
        for noise in noises:
            noise.stop(net)
    if noisy:  # the limit meters' last readings (polled every 2 s) include the phase's end
        time.sleep(LIMIT_POLL + 0.5)
    limits = net.limits()
    timed_out = net.daemon.log_text()[log_at:].count(" timed out")
    # a lost request counts as ping's give-up time (-W 1): a p99 of 1000 ms says that
    # more than 1% of the requests got no reply within a second
    every = rtts + [LOST_MS] * win.lost
    return {
        "ping": {
            **win.as_dict(),
            "rtt_ms_p50": _r(percentile(every, 50)),
            "rtt_ms_p99": _r(percentile(every, 99)),
            "rtt_ms_max": _r(max(every, default=None)),
            "rtts_ms": [round(x, 3) for x in rtts],
        },
        "tcp": iperf,
        "shared_link_pps": round((tx1 - tx0) / (t1 - t0)),
        "vswitchd_cpu": round((cpu1 - cpu0) / (t1 - t0), 3),
        "a_dropped_by_limits": limits["dropped"] - dropped0,
        "a_limits_in_force": limits["effective"] if limits["meters"] else {},
        "fabric_links_timed_out": timed_out,
    }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def run(cfg: Config, progress: bool = True) -> dict[str, Any]:
    t0 = time.monotonic()
    bar = Progress(1 + len(PHASES), progress)
    result: dict[str, Any] = {
        "benchmark": "noisy-neighbour",
        "topology": "ring of 4 pswitches, one ovs-vswitchd (userspace datapath)",
        "seconds_per_phase": cfg.seconds,
        "ping_interval_s": cfg.interval,
        "tcp_rate": cfg.rate,
        "default_limits": cfg.limits,
        "blast_fps": cfg.blast,
        "noise": list(cfg.noise),
        "phases": {},
    }
    with noisy_network(default_limits=cfg.limits, log_level="info") as net:
        bar.step("ring, daemon, both tenants up")
        for key, label, noisy, override in PHASES:
            if override is not None:
                net.set_limits(override)
            got = measure(net, cfg, noisy)
            got["label"] = label
            result["phases"][key] = got
            p = got["ping"]
            bar.step(f"{label}: lost {p['lost']}, p99 {p['rtt_ms_p99']} ms, "
                     f"{got['shared_link_pps']} pkt/s on s1->s2")  # fmt: skip
    result["goals"] = goals(result["phases"])
    result["reference"] = REFERENCE
    result["seconds"] = round(time.monotonic() - t0, 1)
    return result


def rate_mbps(rate: str) -> float | None:
    """iperf3's -b (`10M`, `500K`, `1G`, bits/s) in Mb/s; None if unreadable."""
    scale = {"K": 1e-3, "M": 1.0, "G": 1e3}.get(rate[-1:].upper())
    try:
        return float(rate[:-1]) * scale if scale else float(rate) / 1e6
    except ValueError:
        return None


def goals(phases: dict[str, Any]) -> dict[str, bool]:
    """With limits, B lost no ping and its RTT p99 stayed within GOAL_P99_RATIO of the
    quiet run's."""
    base = phases["quiet"]["ping"]["rtt_ms_p99"]
    lim = phases["limited"]["ping"]
    return {
        "limited_no_loss": lim["lost"] == 0 and lim["sent"] > 0,
        "limited_p99_within_2x": base is not None and lim["rtt_ms_p99"] is not None
        and lim["rtt_ms_p99"] <= GOAL_P99_RATIO * base,
    }  # fmt: skip


def _f(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def _ms(x: float | None, spec: str = ".2f") -> str:
    return "lost" if x is not None and x >= LOST_MS else _f(x, spec)


def table(r: dict[str, Any]) -> str:
    lines = [
        f"tenantvisor bench noisy-neighbour: {r['topology']}",
        f"A: loop in its slice fed {r['blast_fps']:g} broadcast frames/s; B: ping -i "
        f"{r['ping_interval_s']:g} and iperf3 TCP at {r['tcp_rate']}b/s, h2 -> h4 over the "
        f"same s1-s2 link; {r['seconds_per_phase']:g} s per phase; "
        f"--default-limits {r['default_limits']}",
        "",
        f"{'phase':18}{'A pkt/s':>9}{'vswd CPU':>9}{'B sent':>8}{'lost':>6}{'p50 ms':>8}"
        f"{'p99 ms':>8}{'max ms':>8}{'TCP Mb/s':>9}{'retx':>6}{'A dropped':>10}{'LLDP t/o':>9}",
    ]
    for ph in r["phases"].values():
        p, tcp = ph["ping"], ph["tcp"]
        mbps = _f(tcp.get("mbps"), ".1f") if "error" not in tcp else "err"
        lines.append(
            f"{ph['label']:18}{ph['shared_link_pps']:>9}{ph['vswitchd_cpu'] * 100:>8.0f}%"
            f"{p['sent']:>8}{p['lost']:>6}{_ms(p['rtt_ms_p50']):>8}{_ms(p['rtt_ms_p99']):>8}"
            f"{_ms(p['rtt_ms_max'], '.1f'):>8}{mbps:>9}{tcp.get('retransmits', '-'):>6}"
            f"{ph['a_dropped_by_limits']:>10}{ph['fabric_links_timed_out']:>9}"
        )
    q = r["phases"]["quiet"]["ping"]["rtt_ms_p99"]
    lim = r["phases"]["limited"]["ping"]["rtt_ms_p99"]
    unl = r["phases"]["unlimited"]["ping"]["rtt_ms_p99"]
    lines.append(
        "(a lost ping counts as 1000 ms, ping's give-up time, in p50/p99/max: "
        "'lost' there means over 1% or 50% of the requests got no reply)"
    )
    if q and lim and unl:
        lines.append(f"B's RTT p99 vs quiet: x{unl / q:.1f} without limits, x{lim / q:.1f} "
                     "with limits")  # fmt: skip
    errs = [f"{ph['label']}: {ph['tcp']['error']}" for ph in r["phases"].values()
            if "error" in ph["tcp"]]  # fmt: skip
    lines += [f"iperf3 {e}" for e in errs]
    lines += closing_lines(r, [
        ("limited_no_loss", "with limits, B loses no ping"),
        ("limited_p99_within_2x", "with limits, B's RTT p99 <= 2x quiet"),
    ], width=38)  # fmt: skip
    return "\n".join(lines)


def plot(r: dict[str, Any], path: str) -> None:
    """B's RTT distribution per phase (left), and per phase B's pings lost and TCP
    throughput beside A's load on the shared link (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"quiet": "#2a7", "unlimited": "#c44", "limited": "#247", "quiet_again": "#8c8"}
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 5))
    for key, ph in r["phases"].items():
        rtts = sorted(ph["ping"]["rtts_ms"])
        sent = max(ph["ping"]["sent"], len(rtts))
        if rtts:  # over every request: the curve ends at the fraction answered
            ys = [(i + 1) / sent for i in range(len(rtts))]
            ax.plot(rtts, ys, color=colours.get(key, "#888"),
                    label=f"{ph['label']} ({ph['ping']['lost']} lost)")  # fmt: skip
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.axhline(0.99, color="#888", lw=0.6, ls=":")
    ax.set(title="tenant B: ping RTT (CDF over requests sent)", xlabel="RTT (ms, log)",
           ylabel="fraction of requests answered")  # fmt: skip
    ax.legend(fontsize=8)
    keys = list(r["phases"])
    xs = range(len(keys))
    phs = [r["phases"][k] for k in keys]
    labels = [ph["label"] for ph in phs]
    asked = rate_mbps(r["tcp_rate"]) or 1.0
    tcp = [100 * (ph["tcp"].get("mbps") or 0) / asked for ph in phs]
    lost = [100 * ph["ping"]["lost"] / max(ph["ping"]["sent"], 1) for ph in phs]
    pps = [ph["shared_link_pps"] for ph in phs]
    bx.bar([x - 0.27 for x in xs], pps, 0.27, color="#c84", label="s1->s2 pkt/s (both tenants)")
    bx.set_yscale("log")
    bx.set_ylabel("packets/s on the shared link (log)")
    b2 = bx.twinx()
    b2.bar(list(xs), tcp, 0.27, color="#247", label=f"B's TCP, % of {r['tcp_rate']}b/s asked")
    b2.bar([x + 0.27 for x in xs], lost, 0.27, color="#c44", label="B's pings lost, % of sent")
    b2.set_ylim(0, 110)
    b2.set_ylabel("%")
    bx.set_xticks(list(xs), labels, fontsize=8)
    h1, l1 = bx.get_legend_handles_labels()
    h2, l2 = b2.get_legend_handles_labels()
    bx.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08),
              ncol=3, frameon=False)  # fmt: skip
    bx.set_title(f"per phase (limits: {r['default_limits']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run_noisy(
    quick: bool = False,
    seconds: float | None = None,
    limits: str | None = None,
    rate: str | None = None,
    noise: str | None = None,
    interval: float | None = None,
    as_json: bool = False,
    plot_path: str | None = None,
) -> int:
    base = QUICK if quick else Config()
    kinds = [n.strip() for n in (noise or "loop").split(",") if n.strip()]
    unknown = [n for n in kinds if n not in NOISES]
    if unknown or not kinds:
        print(f"tenantvisor bench: --noise {noise!r}: expected some of {', '.join(NOISES)}",
              file=sys.stderr)  # fmt: skip
        return 2
    cfg = Config(
        seconds=seconds if seconds is not None else base.seconds,
        warmup=base.warmup,
        interval=interval if interval is not None else base.interval,
        rate=rate or base.rate,
        limits=limits or base.limits,
        noise=kinds,
    )
    if cfg.seconds < 1 or not 0.001 <= cfg.interval <= 1:
        print("tenantvisor bench: --seconds must be >= 1, --interval 0.001-1 s", file=sys.stderr)
        return 2
    result = run(cfg)
    return emit(
        result, plot=plot, table=table, plot_path=plot_path, as_json=as_json,
        default_plot="bench-noisy-neighbour.png",
    )  # fmt: skip


__all__ = ["NOISES", "Config", "Noise", "goals", "plot", "run", "run_noisy", "table"]

"""`tenantvisor bench dnb`: the paper's section IV on emulated compute nodes, DNB vs CNB.

Set-up: five compute nodes plus a sixth "network node" (each a private OVS in its own
namespace on one transport switch) registered with a `tenantvisor serve` process through its
REST API, as an operator would.  Per network, a probe port on the network node plays the
paper's "interface in the tenant network's namespace" on the network controller node.

* **Reachability time** (Fig. 4/5): for each (networks, instances) point, the instances are
  booted (namespace + tap), spread round-robin over the networks and the five nodes, then
  attached in one batch of API requests.  Before each request a `ping -D -i 0.005` toward
  the instance starts on the probe; t_r = first echo reply - request time.  The probe's and
  the instance's neighbour entries are seeded (Neutron's l2pop ARP responder does the same
  for real VMs), so t_r measures the data path, not ARP retry timers (1 s in Linux).
* **Throughput** (Fig. 6-8): iperf3 TCP and UDP between the probe and instances, in both
  directions (controller -> VM and VM -> controller), one instance at a time.
* **TCP ratio**: one network of each mode side by side, 2 s TCP samples alternating CNB,
  DNB, CNB, DNB, ... in both directions, until the median of the per-pair DNB/CNB ratios
  has a 95% interval within +-3.5% (or a round limit: quick 14 rounds, ~2 min).  Single
  samples per mode varied 0.88-1.63 from run to run on this machine.
* Both with mode `dedicated` (DNB) and `common` (CNB), on the same nodes, alternately.

`--json` prints one object with `reachability_ratio` (DNB / CNB, means over the run),
`tcp_throughput_ratio` (the median of the pairs) with `tcp_throughput_ratio_spread` (n,
quartiles, extremes, the median's 95% interval and whether it met the precision asked),
`tcp_pairs` (every pair) and `equations_hold` (bridges and tunnels read back from every
node's OVSDB at the largest DNB point, against equations (1)-(4)).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenantvisor.bench.report import emit
from tenantvisor.testbed import netns as nx
from tenantvisor.testbed.daemon import Daemon
from tenantvisor.testbed.nodes import VM, NodeTestbed

MODES = ("dedicated", "common")
LABEL = {"dedicated": "DNB", "common": "CNB"}
PROBE_IP = "192.168.0.254"
_PING_RE = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from")


@dataclass
class Config:
    networks: list[int]
    instances: list[int]
    tput_instances: list[int]
    tput_seconds: int
    # The TCP ratio: rounds of alternating (CNB, DNB) samples, one pair per direction each,
    # until the median's 95% confidence interval is within +-pair_precision of it (at least
    # min_rounds, at most max_rounds).
    min_rounds: int = 6
    max_rounds: int = 14
    pair_seconds: int = 2  # per sample: 1 s samples were twice as noisy (TCP's start)
    pair_precision: float = 0.035
    reach_timeout: float = 8.0


QUICK = Config(networks=[1, 2], instances=[2, 5], tput_instances=[1], tput_seconds=2)
FULL = Config(
    networks=[1, 2, 4], instances=[5, 10, 20], tput_instances=[1, 2, 4], tput_seconds=5,
    min_rounds=10, max_rounds=30,
)  # fmt: skip


class Progress:
    """A one-line progress bar on stderr (a line per step when stderr is not a terminal)."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.t0 = time.monotonic()

    def skip(self, n: int) -> None:
        """Steps that will not happen (a series that stopped early)."""
        self.done += n

    def step(self, what: str) -> None:
        self.done += 1
        if not self.enabled:
            return
        width = 30
        filled = int(width * self.done / self.total)
        bar = "#" * filled + "." * (width - filled)
        line = f"[{bar}] {self.done}/{self.total} {time.monotonic() - self.t0:5.1f}s {what}"
        if self.tty:
            sys.stderr.write("\r" + line[:110].ljust(110))
            if self.done >= self.total:
                sys.stderr.write("\n")
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


class Bench:
    def __init__(self, cfg: Config, progress: bool) -> None:
        self.cfg = cfg
        self.rundir = Path(tempfile.mkdtemp(prefix="tv-bench-dnb-"))
        self.tb = NodeTestbed(6, rundir=self.rundir / "nodes")
        self.daemon: Daemon | None = None
        self.macs = 0
        self.serial = 0
        self.equations: list[bool] = []
        per_mode = len(cfg.networks) * len(cfg.instances) + len(cfg.tput_instances)
        self.progress = Progress(2 * per_mode + 1 + cfg.max_rounds, progress)

    # --- plumbing ---------------------------------------------------------------------------
    def api(self, method: str, path: str, body: Any = None) -> Any:
        assert self.daemon is not None
        return self.daemon.rest(method, path, body)

    def start(self) -> None:
        self.tb.build()
        sock = f"unix:{self.rundir}/of.sock"
        self.daemon = Daemon(self.rundir / "daemon", sock, log_level="warning").start()
        self.tenant = self.api("POST", "/v1/tenants", {"name": "bench"})["id"]
        for node in self.tb.nodes.values():
            self.api("POST", "/v1/nodes", node.registration())
        self.progress.step("nodes registered")

    def close(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
        self.tb.close()
        shutil.rmtree(self.rundir, ignore_errors=True)

    def boot(self, node: str, ip: str) -> VM:
        self.macs += 1
        mac = f"02:be:00:00:{self.macs >> 8:02x}:{self.macs & 0xFF:02x}"
        return self.tb.add_vm(node, mac, ip)

    def networks(self, mode: str, n: int) -> tuple[list[str], dict[str, VM]]:
        """``n`` fresh networks, each with its probe on the network node (node6)."""
        ids, probes = [], {}
        for _ in range(n):
            self.serial += 1
            nid = f"{mode[0]}{self.serial}"
            self.api(
                "POST", "/v1/dnb/networks", {"id": nid, "mode": mode, "tenant_id": self.tenant}
            )
            probe = self.boot("node6", f"{PROBE_IP}/24")
            probe.exec(["sysctl", "-q", "-w", "net.ipv4.neigh.eth0.retrans_time_ms=10"])
            self.attach(nid, probe)
            ids.append(nid)
            probes[nid] = probe
        return ids, probes

    def attach(self, nid: str, vm: VM) -> None:
        body = {"node": vm.node, "mac": vm.mac, "ip": str(vm.ip), "interface": vm.tap}
        self.api("POST", f"/v1/dnb/networks/{nid}/vms", body)

    def teardown(self, attached: list[tuple[str, VM]], ids: list[str]) -> None:
        for nid, vm in attached:
            self.api("DELETE", f"/v1/dnb/networks/{nid}/vms/{vm.mac}")
            self.tb.remove_vm(vm)
        for nid in ids:
            self.api("DELETE", f"/v1/dnb/networks/{nid}")

    # --- reachability -----------------------------------------------------------------------
    def reachability(self, mode: str, n_nets: int, n_inst: int) -> dict[str, Any]:
        ids, probes = self.networks(mode, n_nets)
        attached: list[tuple[str, VM]] = [(nid, probes[nid]) for nid in ids]
        compute = [f"node{i}" for i in range(1, 6)]
        plan = []
        for i in range(n_inst):
            nid = ids[i % n_nets]
            ip = f"192.168.0.{i // n_nets + 1}/24"
            plan.append((nid, self.boot(compute[i % len(compute)], ip)))
        # ping counts "host unreachable" (no ARP answer yet) towards -c, so it runs with a
        # large count and a reader thread stops it at the first reply.
        watchers: list[tuple[float, threading.Thread, list[float]]] = []
        for nid, vm in plan:
            cmd = [
                "ping",
                "-n",
                "-D",
                "-c",
                "100000",
                "-i",
                "0.005",
                "-w",
                str(int(self.cfg.reach_timeout)),
                str(vm.ip.ip),
            ]
            # Neighbours are seeded both ways (as Neutron's l2pop ARP responder would answer):
            # t_r then measures the data path, not ARP timers, and ping never sees "host
            # unreachable", on which it gives up.
            probe = probes[nid]
            _neigh(probe, str(vm.ip.ip), vm.mac)
            _neigh(vm, PROBE_IP, probe.mac)
            proc = nx.ns_popen(probe.netns, cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            first: list[float] = []
            th = threading.Thread(target=_first_reply, args=(proc, first), daemon=True)
            th.start()
            t_rq = time.time()
            self.attach(nid, vm)
            attached.append((nid, vm))
            watchers.append((t_rq, th, first))
        times = []
        failed = 0
        for t_rq, th, first in watchers:
            th.join(self.cfg.reach_timeout + 5)
            if first:
                times.append((first[0] - t_rq) * 1e3)
            else:
                failed += 1
        if mode == "dedicated" and n_inst == max(self.cfg.instances):
            self.equations.append(bool(self.api("GET", "/v1/dnb/equations")["holds"]))
        self.teardown(attached, ids)
        self.progress.step(f"{LABEL[mode]} reachability {n_nets} net, {n_inst} inst")
        return {
            "networks": n_nets,
            "instances": n_inst,
            "success": len(times),
            "failed": failed,
            "mean_ms": statistics.fmean(times) if times else None,
            "stdev_ms": statistics.pstdev(times) if times else None,
        }

    # --- throughput -------------------------------------------------------------------------
    def iperf(self, probe: VM, vm: VM, udp: bool, reverse: bool) -> float:
        srv = _iperf_server(vm, once=True)
        try:
            return _iperf(probe, vm, self.cfg.tput_seconds, udp=udp, reverse=reverse)
        finally:
            srv.kill()
            srv.wait()

    def paired_tcp(self) -> dict[str, Any]:
        """TCP samples of CNB and DNB taken alternately (CNB, DNB, CNB, DNB, ...), each
        direction in turn, on one network of each mode set up side by side (probe on the
        network node, one instance on node1), until the median of the per-pair DNB/CNB
        ratios is known to +-pair_precision (95% confidence) or max_rounds are done.

        Why: throughput here drifts by tens of percent within seconds (two cores shared by
        six userspace datapaths, iperf3 and whoever else uses the machine), so one sample
        per mode, seconds apart, gave a DNB/CNB ratio anywhere in 0.88-1.63.  Adjacent
        samples see nearly the same machine, so the ratio within a pair cancels most of the
        drift, and the median over many pairs ignores the pairs a burst of load hit.  How
        many pairs that takes depends on how busy the machine is, hence the stopping rule
        (a calm machine stops early; a busy one says that its interval stayed wide)."""
        setups: dict[str, tuple[str, VM, VM, subprocess.Popen[Any]]] = {}
        pairs: list[dict[str, Any]] = []
        rounds = 0
        try:
            for mode in ("common", "dedicated"):
                ids, probes = self.networks(mode, 1)
                nid = ids[0]
                vm = self.boot("node1", "192.168.0.1/24")
                self.attach(nid, vm)
                setups[mode] = (nid, probes[nid], vm, _iperf_server(vm, once=False))
                if not probes[nid].ping(str(vm.ip.ip), timeout=5):
                    raise RuntimeError(f"{LABEL[mode]}: instance {vm.ip} not reachable")
            precise = False
            while rounds < self.cfg.max_rounds:
                rounds += 1
                for reverse in (False, True):
                    got = {}
                    for mode in ("common", "dedicated"):  # CNB, DNB, CNB, DNB, ...
                        _, probe, vm, _ = setups[mode]
                        got[mode] = _iperf(probe, vm, self.cfg.pair_seconds, reverse=reverse)
                    pairs.append({
                        "direction": "from_vm" if reverse else "to_vm",
                        "cnb_mbps": got["common"],
                        "dnb_mbps": got["dedicated"],
                        "ratio": got["dedicated"] / got["common"],
                    })  # fmt: skip
                ratios = [p["ratio"] for p in pairs]
                precise = rounds >= self.cfg.min_rounds and within(ratios, self.cfg.pair_precision)
                self.progress.step(
                    f"TCP pairs: {len(pairs)}, median {statistics.median(ratios):.2f}"
                )
                if precise:
                    break
        finally:
            for nid, probe, vm, srv in setups.values():
                srv.kill()
                srv.wait()
                self.teardown([(nid, probe), (nid, vm)], [nid])
        self.progress.skip(self.cfg.max_rounds - rounds)
        ratios = [p["ratio"] for p in pairs]
        lo_hi = median_ci(ratios)
        return {
            "seconds_per_sample": self.cfg.pair_seconds,
            "rounds": rounds,
            "pairs": pairs,
            "ratio": spread(ratios),
            "ratio_ci95": list(lo_hi) if lo_hi is not None else None,
            "precision_target": self.cfg.pair_precision,
            "precise": precise,
            "ratio_by_direction": {
                d: spread([p["ratio"] for p in pairs if p["direction"] == d])
                for d in ("to_vm", "from_vm")
            },
            "tcp_mbps": {
                "common": statistics.median(p["cnb_mbps"] for p in pairs),
                "dedicated": statistics.median(p["dnb_mbps"] for p in pairs),
            },
        }

    def throughput(self, mode: str, n_inst: int) -> dict[str, Any]:
        ids, probes = self.networks(mode, 1)
        nid = ids[0]
        attached: list[tuple[str, VM]] = [(nid, probes[nid])]
        vms = [self.boot(f"node{i % 5 + 1}", f"192.168.0.{i + 1}/24") for i in range(n_inst)]
        for vm in vms:
            self.attach(nid, vm)
            attached.append((nid, vm))
        res: dict[str, list[float]] = {
            "tcp_to_vm": [],
            "tcp_from_vm": [],
            "udp_to_vm": [],
            "udp_from_vm": [],
        }
        for vm in vms:
            if not probes[nid].ping(str(vm.ip.ip), timeout=5):
                raise RuntimeError(f"{LABEL[mode]}: instance {vm.ip} not reachable")
            res["tcp_to_vm"].append(self.iperf(probes[nid], vm, udp=False, reverse=False))
            res["tcp_from_vm"].append(self.iperf(probes[nid], vm, udp=False, reverse=True))
            res["udp_to_vm"].append(self.iperf(probes[nid], vm, udp=True, reverse=False))
            res["udp_from_vm"].append(self.iperf(probes[nid], vm, udp=True, reverse=True))
        self.teardown(attached, ids)
        self.progress.step(f"{LABEL[mode]} throughput {n_inst} inst")
        out: dict[str, Any] = {"instances": n_inst}
        out.update({k: statistics.fmean(v) for k, v in res.items()})
        out["tcp_mbps"] = (out["tcp_to_vm"] + out["tcp_from_vm"]) / 2
        out["udp_mbps"] = (out["udp_to_vm"] + out["udp_from_vm"]) / 2
        return out


def _iperf_server(vm: VM, once: bool) -> subprocess.Popen[Any]:
    """An iperf3 server in `vm`, listening when this returns (`once`: for one test)."""
    srv = vm.popen(["iperf3", "-s", "-B", str(vm.ip.ip), *(["-1"] if once else [])])
    deadline = time.monotonic() + 5
    while "LISTEN" not in vm.exec(["ss", "-ltn", "sport", "= :5201"]).stdout:
        if time.monotonic() > deadline:
            srv.kill()
            srv.wait()
            raise RuntimeError("iperf3 server did not start")
        time.sleep(0.05)
    return srv


def _iperf(probe: VM, vm: VM, seconds: int, *, udp: bool = False, reverse: bool = False) -> float:
    """Mb/s of one iperf3 test from `probe` to the server in `vm` (`reverse`: vm -> probe)."""
    cmd = ["iperf3", "-c", str(vm.ip.ip), "-t", str(seconds), "-J"]
    if udp:
        cmd += ["-u", "-b", "300M", "-l", "1400"]
    if reverse:
        cmd.append("-R")
    data = json.loads(probe.exec(cmd, timeout=seconds + 20, check=False).stdout)
    if "error" in data:
        raise RuntimeError(f"iperf3 {' '.join(cmd[1:])}: {data['error']}")
    end = data["end"]
    return float((end["sum"] if udp else end["sum_received"])["bits_per_second"]) / 1e6


def spread(values: list[float]) -> dict[str, float | int]:
    """n, median, quartiles and extremes of `values` (quartiles inclusive of the extremes,
    so two values give their own range)."""
    if not values:
        return {"n": 0}
    q1, median, q3 = (
        statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    )
    return {"n": len(values), "median": median, "q1": q1, "q3": q3,
            "min": min(values), "max": max(values)}  # fmt: skip


def median_ci(values: list[float], conf: float = 0.95) -> tuple[float, float] | None:
    """A distribution-free confidence interval for the median: the order statistics
    x(k) and x(n+1-k) with the largest k for which the median lies outside them with
    probability at most 1 - conf (binomial, p = 1/2).  None when n is too small for one
    (fewer than 6 values at 95%).  No assumption about the shape of the ratios, which have
    heavy tails here (a burst of load halves one sample)."""
    n = len(values)
    xs = sorted(values)
    tail = 0.0
    k = 0
    while k < n // 2:  # P(X <= k) for X ~ Bin(n, 1/2): k+1 values below would be outside
        tail += math.comb(n, k) / 2**n
        if 2 * tail > 1 - conf:
            break
        k += 1
    if k == 0:
        return None
    return xs[k - 1], xs[n - k]


def within(values: list[float], precision: float) -> bool:
    """Whether the median's 95% interval lies within +-precision (relative) of it."""
    ci = median_ci(values)
    if ci is None:
        return False
    m = statistics.median(values)
    return m * (1 - precision) <= ci[0] and ci[1] <= m * (1 + precision)


def _neigh(vm: VM, ip: str, mac: str) -> None:
    vm.exec(["ip", "neigh", "replace", ip, "lladdr", mac, "dev", "eth0", "nud", "permanent"])


def _first_reply(proc: subprocess.Popen[str], out: list[float]) -> None:
    """Record the timestamp of ping's first echo reply, then stop it."""
    assert proc.stdout is not None
    for line in proc.stdout:
        m = _PING_RE.match(line)
        if m:
            out.append(float(m.group(1)))
            break
    proc.terminate()
    proc.wait()


def run(cfg: Config, progress: bool = True) -> dict[str, Any]:
    t0 = time.monotonic()
    b = Bench(cfg, progress)
    reach: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    tput: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    try:
        b.start()
        for n_nets in cfg.networks:  # modes alternate so drift on the machine hits both
            for n_inst in cfg.instances:
                for mode in MODES:
                    reach[mode].append(b.reachability(mode, n_nets, n_inst))
        pairs = b.paired_tcp()
        for n_inst in cfg.tput_instances:
            for mode in MODES:
                tput[mode].append(b.throughput(mode, n_inst))
    finally:
        b.close()

    def mean(rows: list[dict[str, Any]], key: str) -> float:
        vals = [r[key] for r in rows if r[key] is not None]
        return statistics.fmean(vals) if vals else float("nan")

    out: dict[str, Any] = {"benchmark": "dnb", "compute_nodes": 5, "network_nodes": 1}
    out["reachability"] = reach
    out["throughput"] = tput
    out["reachability_ms"] = {m: mean(reach[m], "mean_ms") for m in MODES}
    # TCP from the alternating pairs (medians); the per-instance rows above are single
    # samples, for the figures
    out["tcp_pairs"] = pairs
    out["tcp_mbps"] = pairs["tcp_mbps"]
    out["udp_mbps"] = {m: mean(tput[m], "udp_mbps") for m in MODES}
    out["reachability_ratio"] = (
        out["reachability_ms"]["dedicated"] / out["reachability_ms"]["common"]
    )
    out["tcp_throughput_ratio"] = pairs["ratio"]["median"]
    out["tcp_throughput_ratio_spread"] = {
        **pairs["ratio"], "ci95": pairs["ratio_ci95"], "precise": pairs["precise"],
    }  # fmt: skip
    out["udp_throughput_ratio"] = out["udp_mbps"]["dedicated"] / out["udp_mbps"]["common"]
    out["equations_hold"] = bool(b.equations) and all(b.equations)
    out["failed_pings"] = sum(r["failed"] for m in MODES for r in reach[m])
    out["seconds"] = time.monotonic() - t0
    return out


def plot(r: dict[str, Any], path: str) -> None:
    """Figures 4-8 of the paper in one image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 5, figsize=(22, 4.2))
    nets = sorted({row["networks"] for row in r["reachability"]["dedicated"]})
    for n in nets:
        rows = [x for x in r["reachability"]["dedicated"] if x["networks"] == n]
        ax[0].errorbar(
            [x["instances"] for x in rows],
            [x["mean_ms"] or 0 for x in rows],
            yerr=[x["stdev_ms"] or 0 for x in rows],
            marker="o",
            capsize=3,
            label=f"{n} network(s)",
        )
        cnb = [x for x in r["reachability"]["common"] if x["networks"] == n]
        ratio = [(d["mean_ms"] or 0) / (c["mean_ms"] or 1) for d, c in zip(rows, cnb, strict=True)]
        ax[1].plot([x["instances"] for x in rows], ratio, marker="o", label=f"{n} network(s)")
    ax[0].set(title="Fig. 4: DNB reachability time", xlabel="instances", ylabel="ms")
    ax[1].axhline(1, color="#888", lw=0.8)
    ax[1].set(title="Fig. 5: reachability DNB / CNB", xlabel="instances", ylabel="ratio")
    for a in ax[:2]:
        a.legend()
    t = r["throughput"]
    inst = [x["instances"] for x in t["dedicated"]]
    xs = range(len(inst))
    ax[2].bar([i - 0.2 for i in xs], [x["tcp_mbps"] for x in t["dedicated"]], 0.4, label="TCP")
    ax[2].bar([i + 0.2 for i in xs], [x["udp_mbps"] for x in t["dedicated"]], 0.4, label="UDP")
    ax[2].set(title="Fig. 6: DNB bidirectional bandwidth", xlabel="instances", ylabel="Mb/s")
    ax[2].set_xticks(list(xs), [str(i) for i in inst])
    ax[3].bar(
        [i - 0.2 for i in xs],
        [x["tcp_to_vm"] for x in t["dedicated"]],
        0.4,
        label="controller -> VM",
    )
    ax[3].bar(
        [i + 0.2 for i in xs],
        [x["tcp_from_vm"] for x in t["dedicated"]],
        0.4,
        label="VM -> controller",
    )
    ax[3].set(title="Fig. 7: DNB TCP per direction", xlabel="instances", ylabel="Mb/s")
    ax[3].set_xticks(list(xs), [str(i) for i in inst])
    ratio_t = [
        d["tcp_mbps"] / c["tcp_mbps"] for d, c in zip(t["dedicated"], t["common"], strict=True)
    ]
    ax[4].bar([str(i) for i in inst], ratio_t, color="#2a7", label="one sample per mode")
    ax[4].axhline(1, color="#888", lw=0.8)
    sp = r["tcp_throughput_ratio_spread"]
    ax[4].axhspan(sp["q1"], sp["q3"], color="#e83", alpha=0.25)
    ax[4].axhline(sp["median"], color="#e83", label=f"median of {sp['n']} pairs (IQR)")
    ax[4].legend()
    ax[4].set(title="Fig. 8: TCP DNB / CNB", xlabel="instances", ylabel="ratio")
    for a in ax[2:4]:
        a.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def table(r: dict[str, Any]) -> str:
    lines = [
        "reachability time (attach request -> first echo reply), ms",
        f"{'networks':>8} {'instances':>9} {'DNB mean':>9} {'sd':>6} {'CNB mean':>9} "
        f"{'sd':>6} {'DNB/CNB':>8} {'lost':>5}",
    ]
    for d, c in zip(r["reachability"]["dedicated"], r["reachability"]["common"], strict=True):
        ratio = (d["mean_ms"] or 0) / (c["mean_ms"] or float("nan"))
        lines.append(
            f"{d['networks']:>8} {d['instances']:>9} {d['mean_ms'] or 0:9.1f} "
            f"{d['stdev_ms'] or 0:6.1f} {c['mean_ms'] or 0:9.1f} {c['stdev_ms'] or 0:6.1f}"
            f" {ratio:8.2f} {d['failed'] + c['failed']:>5}"
        )
    lines += [
        "",
        "throughput (iperf3, probe on the network node <-> instance), Mb/s",
        f"{'instances':>9} {'mode':>4} {'TCP->VM':>8} {'TCP<-VM':>8} {'UDP->VM':>8} {'UDP<-VM':>8}",
    ]
    for d, c in zip(r["throughput"]["dedicated"], r["throughput"]["common"], strict=True):
        for mode, x in (("DNB", d), ("CNB", c)):
            lines.append(
                f"{x['instances']:>9} {mode:>4} {x['tcp_to_vm']:8.0f} "
                f"{x['tcp_from_vm']:8.0f} {x['udp_to_vm']:8.0f} {x['udp_from_vm']:8.0f}"
            )
    tp, sp = r["tcp_pairs"], r["tcp_throughput_ratio_spread"]
    ci = sp["ci95"] or [float("nan")] * 2
    lines += [
        "",
        f"TCP, alternating pairs of {tp['seconds_per_sample']} s samples (CNB, DNB, ...), "
        "one instance, both directions",
        f"{'direction':>9} {'pairs':>5} {'median':>6} {'q1':>5} {'q3':>5} {'min':>5} {'max':>5}",
    ]
    for name, x in (*tp["ratio_by_direction"].items(), ("both", sp)):
        lines.append(
            f"{name:>9} {x['n']:>5} {x['median']:6.2f} {x['q1']:5.2f} {x['q3']:5.2f} "
            f"{x['min']:5.2f} {x['max']:5.2f}"
        )
    lines += [
        f"median Mb/s: CNB {r['tcp_mbps']['common']:.0f}, DNB {r['tcp_mbps']['dedicated']:.0f};"
        f" median ratio's 95% interval {ci[0]:.2f}-{ci[1]:.2f}"
        + (
            "" if sp["precise"] else f" (wider than +-{tp['precision_target']:.1%}: a busy machine)"
        ),
        "",
        f"reachability_ratio (DNB/CNB)   {r['reachability_ratio']:.2f}",
        f"tcp_throughput_ratio (DNB/CNB) {r['tcp_throughput_ratio']:.2f} "
        f"(median of {sp['n']} pairs, IQR {sp['q1']:.2f}-{sp['q3']:.2f})",
        f"udp_throughput_ratio (DNB/CNB) {r['udp_throughput_ratio']:.2f}",
        f"equations (1)-(4) hold         {r['equations_hold']}",
        f"run time                       {r['seconds']:.0f} s",
    ]
    return "\n".join(lines)


def run_dnb(quick: bool = False, as_json: bool = False, plot_path: str | None = None) -> int:
    result = run(QUICK if quick else FULL)
    return emit(
        result, plot=plot, table=table, plot_path=plot_path, as_json=as_json,
        default_plot="bench-dnb.png",
    )  # fmt: skip

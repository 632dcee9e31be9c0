"""`tenantvisor bench overhead`: what the hypervisor costs a controller, measured in one run.

The same pre-serialized FLOW_MODs (then a BARRIER) go (a) straight to an Open vSwitch
bridge over its management socket and (b) to a vswitch mapped onto that bridge, through the
daemon running as its own process.  Throughput is FLOW_MODs per second until the BARRIER
reply (so it counts what the switch has applied, not what was buffered); then round trips of
one FLOW_MOD + BARRIER are timed one at a time (with a rule pending, the vswitch's BARRIER
waits for the pswitch's, so nothing is answered locally).  Both runs alternate `repeat`
times and the medians are kept, so the ratios compare runs made seconds apart on the same
(noisy, shared) machine.
"""

from __future__ import annotations

import json
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.openflow import codec, oxm
from tenantvisor.testbed.daemon import Daemon
from tenantvisor.testbed.fabric import Fabric
from tenantvisor.testbed.ofclient import ControllerListener, OFPeer
from tenantvisor.testbed.topo import linear


def flow_mods(n: int, out_port: int, base: int) -> list[bytes]:
    """n distinct rules (eth_dst varies) outputting to one port, already serialized."""
    ins = codec.encode_instructions(apply_actions=codec.output(out_port))
    msgs = []
    for i in range(n):
        mac = (0x02 << 40) | (base << 24) | i
        fm = codec.FlowMod(
            0, 0, 0, ofp.OFPFC_ADD, 0, 0, 100, ofp.OFP_NO_BUFFER, ofp.OFPP_ANY, ofp.OFPG_ANY, 0,
            [codec.Oxm(codec.OXM_CLASS_OPENFLOW_BASIC, oxm.ETH_DST, mac.to_bytes(6, "big"))],
            ins,
        )  # fmt: skip
        msgs.append(fm.encode(1000 + i))
    return msgs


def _barrier(peer: OFPeer, xid: int, timeout: float = 60.0) -> None:
    peer.send(codec.header(ofp.OFP_VERSION, ofp.OFPT_BARRIER_REQUEST, xid))
    m = peer.recv_until(
        lambda m: m[0] == ofp.OFPT_ERROR or (m[0] == ofp.OFPT_BARRIER_REPLY and m[1] == xid),
        timeout,
    )
    if m is None:
        raise RuntimeError("no BARRIER reply")
    if m[0] == ofp.OFPT_ERROR:
        raise RuntimeError(f"switch refused a benchmark message: {m[2][8:12].hex()}")


def measure(peer: OFPeer, msgs: list[bytes], barriers: int) -> dict[str, float]:
    """Throughput of len(msgs) - barriers rules + BARRIER, then `barriers` round trips of
    one rule + BARRIER each: with a rule pending, the vswitch's BARRIER has to wait for the
    pswitch's, so the round trip includes everything the hypervisor adds."""
    bulk, singles = msgs[:-barriers], msgs[-barriers:]
    _barrier(peer, 1)  # start from a quiet channel
    t0 = time.perf_counter()
    peer.send(b"".join(bulk))
    _barrier(peer, 2)
    elapsed = time.perf_counter() - t0
    rtts = []
    for i, one in enumerate(singles):
        t = time.perf_counter()
        peer.send(one)
        _barrier(peer, 10 + i)
        rtts.append(time.perf_counter() - t)
    rtts.sort()
    return {
        "seconds": elapsed,
        "flow_mod_per_s": len(bulk) / elapsed,
        "barrier_p50_us": statistics.median(rtts) * 1e6,
        "barrier_p99_us": rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))] * 1e6,
    }


def _delete_all(peer: OFPeer) -> None:
    body = codec.FLOW_MOD_BODY.pack(
        0, 0, ofp.OFPTT_ALL, ofp.OFPFC_DELETE, 0, 0, 0,
        ofp.OFP_NO_BUFFER, ofp.OFPP_ANY, ofp.OFPG_ANY, 0,
    )  # fmt: skip
    peer.send(codec.header(4, ofp.OFPT_FLOW_MOD, 5, body + codec.encode_match([])))
    _barrier(peer, 6)


def translate_cost_us(n: int = 2000) -> float:
    """In-process cost of parse + check + translate + encode per tenant FLOW_MOD (no I/O)."""
    from tenantvisor.translate.flow import PhysFlow, translate_flow
    from tenantvisor.translate.view import PortMap, VSwitchView

    view = VSwitchView(1, 1, 1, 1, 64, {1: PortMap(1, 1), 2: PortMap(2, 2, 7, True)})
    msgs = flow_mods(n, 2, 1)
    t0 = time.perf_counter()
    for m in msgs:
        fm = codec.FlowMod.parse(m)
        tf = translate_flow(view, fm.table_id, fm.match, fm.instructions)
        for match, ins in tf.flows:
            PhysFlow(1, tf.table, fm.priority, match, ins, 1).flow_mod(1)
    return (time.perf_counter() - t0) / n * 1e6


def run(n: int, barriers: int, repeat: int = 3) -> dict[str, Any]:
    rundir = Path(tempfile.mkdtemp(prefix="tv-bench-"))
    fab = Fabric(linear(1, 1))
    daemon: Daemon | None = None
    listener = ControllerListener()
    direct_peer: OFPeer | None = None
    try:
        fab.build()
        assert fab.ovs is not None
        host = fab.topo.hosts["h1"]
        dpid = fab.topo.switches["s1"].dpid
        mgmt = fab.ovs.rundir / f"{fab.bridge('s1')}.mgmt"
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(str(mgmt))
        direct_peer = OFPeer(sock).handshake()
        of_sock = f"unix:{fab.ovs.rundir}/tenantvisor.sock"
        # the hypervisor's own cost is measured, not a tenant's rate limit (quotas.py)
        unlimited = ["--tenant-limits", f"msg_rate={1 << 31},msg_burst={1 << 31}"]
        daemon = Daemon(rundir, of_sock, log_level="warning", extra_args=unlimited).start()
        fab.set_controller(of_sock)
        daemon.wait_for("the pswitch", lambda st: len(st["pswitches"]) == 1)
        tok = daemon.rest("POST", "/v1/tenants", {"name": "bench"})["token"]
        url = f"tcp:127.0.0.1:{listener.port}"
        nid = daemon.rest("POST", "/v1/networks", {"controller_urls": [url]}, tok)["id"]
        daemon.rest("POST", f"/v1/networks/{nid}/switches", {"dpids": [dpid]}, tok)
        vp = daemon.rest(
            "POST", f"/v1/networks/{nid}/ports", {"dpid": dpid, "port": host.port}, tok
        )["number"]
        daemon.rest("POST", f"/v1/networks/{nid}/start", None, tok)
        (vpeer,) = listener.accept(1)
        runs: dict[str, list[dict[str, float]]] = {"direct": [], "vswitch": []}
        for r in range(repeat):
            _delete_all(direct_peer)  # the direct run's rules only; tables stay small alike
            msgs = flow_mods(n + barriers, host.port, 2 * r)
            runs["direct"].append(measure(direct_peer, msgs, barriers))
            _delete_all(direct_peer)
            # the daemon re-installs nothing of the direct run; its own rules are in table 0/1
            msgs = flow_mods(n + barriers, vp, 2 * r + 1)
            runs["vswitch"].append(measure(vpeer, msgs, barriers))
            delete_virtual = codec.FLOW_MOD_BODY.pack(
                0, 0, ofp.OFPTT_ALL, ofp.OFPFC_DELETE, 0, 0, 0,
                ofp.OFP_NO_BUFFER, ofp.OFPP_ANY, ofp.OFPG_ANY, 0,
            )  # fmt: skip
            vpeer.send(
                codec.header(4, ofp.OFPT_FLOW_MOD, 5, delete_virtual + codec.encode_match([]))
            )
            _barrier(vpeer, 7)
    finally:
        listener.close()
        if direct_peer is not None:
            direct_peer.close()
        if daemon is not None:
            daemon.stop()
        fab.close()
        shutil.rmtree(rundir, ignore_errors=True)

    def med(kind: str, key: str) -> float:
        return statistics.median(x[key] for x in runs[kind])

    out: dict[str, Any] = {"benchmark": "overhead", "flow_mods": n, "barriers": barriers}
    out["repeat"] = repeat
    for kind in ("direct", "vswitch"):
        out[kind] = {
            k: med(kind, k) for k in ("flow_mod_per_s", "barrier_p50_us", "barrier_p99_us")
        }
        out[kind]["runs"] = runs[kind]
    out["throughput_ratio"] = out["vswitch"]["flow_mod_per_s"] / out["direct"]["flow_mod_per_s"]
    out["barrier_p50_ratio"] = out["vswitch"]["barrier_p50_us"] / out["direct"]["barrier_p50_us"]
    out["barrier_p99_ratio"] = out["vswitch"]["barrier_p99_us"] / out["direct"]["barrier_p99_us"]
    out["translate_us_per_flow_mod"] = translate_cost_us()
    return out


def plot(result: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    kinds = ["direct", "vswitch"]
    labels = ["OVS direct", "through tenantvisor"]
    a.bar(labels, [result[k]["flow_mod_per_s"] for k in kinds], color=["#888", "#2a7"])
    a.set_ylabel("FLOW_MOD / s")
    a.set_title(f"throughput ({result['flow_mods']} rules + BARRIER)")
    x = range(2)
    b.bar([i - 0.2 for i in x], [result[k]["barrier_p50_us"] for k in kinds], 0.4, label="p50")
    b.bar([i + 0.2 for i in x], [result[k]["barrier_p99_us"] for k in kinds], 0.4, label="p99")
    b.set_xticks(list(x), labels)
    b.set_ylabel("µs")
    b.set_title("FLOW_MOD + BARRIER round trip")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run_overhead(
    n: int, barriers: int, as_json: bool = False, plot_path: str | None = None, repeat: int = 3
) -> int:
    if n < 1 or barriers < 1 or repeat < 1:
        print("tenantvisor bench: -n, --barriers and --repeat must be >= 1", file=sys.stderr)
        return 2
    result = run(n, barriers, repeat)
    if plot_path:
        plot(result, plot_path)
        result["plot"] = plot_path
    if as_json:
        print(json.dumps(result))
        return 0
    d, v = result["direct"], result["vswitch"]
    print(f"tenantvisor bench overhead: {n} FLOW_MODs + BARRIER, then {barriers} round trips")
    print("of 1 FLOW_MOD + BARRIER,")
    print(f"median of {repeat} alternating runs")
    print(f"{'':24}{'OVS direct':>14}{'via vswitch':>14}{'ratio':>9}")
    rows = [
        ("FLOW_MOD/s", "flow_mod_per_s", "throughput_ratio", "{:14.0f}"),
        ("1 rule+BARRIER p50 (µs)", "barrier_p50_us", "barrier_p50_ratio", "{:14.1f}"),
        ("1 rule+BARRIER p99 (µs)", "barrier_p99_us", "barrier_p99_ratio", "{:14.1f}"),
    ]
    for label, key, ratio, fmt in rows:
        print(f"{label:24}" + fmt.format(d[key]) + fmt.format(v[key]) + f"{result[ratio]:9.3f}")
    print(f"translation cost in process: {result['translate_us_per_flow_mod']:.1f} µs per FLOW_MOD")
    if plot_path:
        print(f"plot: {plot_path}")
    return 0

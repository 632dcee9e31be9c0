"""A micro-benchmark of the incremental reducer (reduce/prove.py: `Reducer`), no OVS.

What one tenant FLOW_MOD costs the reduction at a core vswitch as its table grows, without
the daemon, the pswitches or the network: the per-change work of `bench reduction` in
isolation.  A core vswitch B sits between two aggregations (link vports 1 and 2, a third
link vport 3 idle, as a core's other pods); every connection puts one 6-field rule at B
each way (Ethernet, IPv4 and TCP source and destination, one output: the bench's rules)
and makes its packets arrive from the aggregation it comes from.  Per connection, as the
endpoint does for a FLOW_MOD (virtual/endpoint.py: `_rule_changed`, `arrivals_grew`,
`_sync_exceptions`): `rule_changed` for the rule, `arrivals_grew` on the vport it comes
in by (half of the connections before their rule, as a path installed from its source
end, half after) and `exceptions()` after each.

    python -m tenantvisor.bench.reducer [--level hop] [--rules 100,1000,2000]

prints the mean microseconds of one change (rule_changed + arrivals_grew + exceptions) in
a window of changes around each number of rules.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator, Sequence

from tenantvisor.openflow import codec, oxm
from tenantvisor.openflow.codec import Oxm
from tenantvisor.reduce.prove import Reducer, arrivals
from tenantvisor.virtual.flowtable import VFlow, normalize

WINDOW = 40  # changes timed around each checkpoint
AGG_A, AGG_B, OTHER = 0xA1, 0xA2, 0xA3


def _mac(host: int) -> str:
    return "02:00:00:" + ":".join(f"{host >> s & 0xFF:02x}" for s in (16, 8, 0))


def conn_match(src: int, dst: int, sport: int, dport: int) -> list[Oxm]:
    """A connection rule's six fields (and the eth_type and ip_proto they need)."""
    return [
        codec.oxm_mac(oxm.ETH_SRC, _mac(src)),
        codec.oxm_mac(oxm.ETH_DST, _mac(dst)),
        codec.oxm_u16(oxm.ETH_TYPE, 0x0800),
        Oxm(codec.OXM_CLASS_OPENFLOW_BASIC, oxm.IP_PROTO, bytes([6])),
        Oxm(codec.OXM_CLASS_OPENFLOW_BASIC, oxm.IPV4_SRC, (0x0A000000 | src).to_bytes(4, "big")),
        Oxm(codec.OXM_CLASS_OPENFLOW_BASIC, oxm.IPV4_DST, (0x0A000000 | dst).to_bytes(4, "big")),
        codec.oxm_u16(oxm.TCP_SRC, sport),
        codec.oxm_u16(oxm.TCP_DST, dport),
    ]


class _Serials:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> int:
        self.n += 1
        return self.n


def forwarding_rule(serial: int, match: list[Oxm], port: int, prio: int = 1000) -> VFlow:
    ins = codec.encode_instructions(apply_actions=codec.output(port))
    return VFlow(serial, 0, prio, match, normalize(match), ins, 0, 0, 0, 0)


def changes(n_conns: int) -> Iterator[tuple[str, object, object]]:
    """The calls the endpoint makes at B, connection by connection: ("rule", None, vf) or
    ("arrive", vport, cubes); each connection gives two rules (one each way)."""
    serial = _Serials()
    for j in range(n_conns):
        src, dst = 1 + j // 2 % 16, 100 + (j // 2 + j // 32) % 16  # host pairs, as the bench
        sport, dport = 40000 + j, 5000 + j
        for m, into, out, far in (
            (conn_match(src, dst, sport, dport), 1, 2, 3),
            (conn_match(dst, src, dport, sport), 2, 1, 3),
        ):
            here = forwarding_rule(serial(), m, out)
            there = forwarding_rule(serial(), m, far)  # at the aggregation it comes from
            cubes = list(arrivals([there], far, into))
            if j % 2:
                yield "rule", None, here
                yield "arrive", into, cubes
            else:
                yield "arrive", into, cubes
                yield "rule", None, here


def run(level: str = "hop", checkpoints: Sequence[int] = (100, 1000, 2000)) -> dict[str, float]:
    """Mean µs per change (rule_changed or arrivals_grew, then exceptions()) over WINDOW rule
    changes before each checkpoint (a number of rules at B)."""
    r = Reducer(level)
    r.rebuild([], {1: (AGG_A, 3), 2: (AGG_B, 3), 3: (OTHER, 3)}, {1: [], 2: [], 3: []})
    last = max(checkpoints)
    out: dict[str, float] = {}
    spent = 0.0
    timed = 0
    rules = 0
    for kind, a, b in changes((last + 1) // 2):
        t0 = time.perf_counter()
        if kind == "rule":
            r.rule_changed(a, b)  # type: ignore[arg-type]
        else:
            r.arrivals_grew(a, b)  # type: ignore[arg-type]
        r.exceptions()
        dt = time.perf_counter() - t0
        if kind == "rule":
            rules += 1
        if any(cp - WINDOW < rules <= cp for cp in checkpoints):
            spent += dt
            timed += kind == "rule"
        if rules in checkpoints and kind == "rule" and timed == WINDOW:
            # per rule: its rule_changed and its arrivals_grew, exceptions() after each
            out[str(rules)] = round(spent / timed * 1e6, 1)
            spent, timed = 0.0, 0
        if rules >= last:
            break
    out["physical"] = r.plan.physical_count()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tenantvisor.bench.reducer")
    p.add_argument("--level", default="hop")
    p.add_argument("--rules", default="100,1000,2000")
    p.add_argument("--profile", action="store_true", help="cProfile the run, top 25 by tottime")
    args = p.parse_args(argv)
    cps = tuple(int(x) for x in args.rules.split(","))
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        got = run(args.level, cps)
        prof.disable()
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    else:
        got = run(args.level, cps)
    print(json.dumps({"level": args.level, "us_per_rule": got}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`tenantvisor bench conformance`: OpenFlow 1.3 conformance of a vswitch against bare OVS.

Every case of `testbed/conformance` (match fields, actions, set-field in four contexts,
instructions, groups, meters, FLOW_MOD commands, PACKET_IN/OUT, statistics and the
switch's own messages) runs once against a bare Open vSwitch bridge whose controller is
the bench, and once against a vswitch of a `tenantvisor serve` process mapped onto a bridge
of the same kind, the bench as its tenant's controller; tester hosts on the bridges' ports
send crafted frames and capture what leaves.  A case passes on a target when what it
observed equals what OpenFlow 1.3 says (OVS's behaviour where OVS departs from it).

The figure of merit is vswitch passes / OVS passes (goal >= 0.97); every case that passes
on OVS and not on the vswitch must be an isolation refusal listed in
`catalog.ALLOWED` (and the README's "Conformance" section).  `--quick`: the CI subset.
Exit status 1 when a difference is not in that list.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import Any

from tenantvisor.bench.dnb import Progress
from tenantvisor.bench.report import emit
from tenantvisor.testbed.conformance.catalog import ALLOWED, all_cases, ci_cases
from tenantvisor.testbed.conformance.harness import CaseResult, rig, run_cases, summary

GOAL = 0.97


def run(quick: bool = False, pattern: str | None = None, progress: bool = True) -> dict[str, Any]:
    t0 = time.monotonic()
    cases = ci_cases() if quick else all_cases()
    if pattern:
        cases = [c for c in cases if re.search(pattern, c.name)]
    bar = Progress(len(cases) + 1, progress)
    with rig() as r:
        bar.step("fabric, daemon and tenant up")
        results = run_cases(r, cases, bar.step)
    out: dict[str, Any] = {"benchmark": "conformance", "subset": "ci" if quick else "full"}
    if pattern:
        out["pattern"] = pattern
    out.update(summary(results, ALLOWED))
    out["kinds"] = _by_kind(results)
    out["ovs_deviations"] = [
        {"case": r.case.name, "note": r.case.ovs_note} for r in results if r.case.ovs_note
    ]
    out["ovs_failures"] = [r.case.name for r in results if not r.outcomes["ovs"].passed]
    out["results"] = [_row(r) for r in results]
    out["goal"] = GOAL
    out["goals"] = {"ratio": out["ratio"] >= GOAL, "explained": not out["unexplained"]}
    out["seconds"] = time.monotonic() - t0
    return out


def _row(r: CaseResult) -> dict[str, Any]:
    row: dict[str, Any] = {"case": r.case.name, "kind": r.case.kind}
    for name, o in r.outcomes.items():
        row[name] = o.passed
        row[f"{name}_s"] = round(o.seconds, 3)
        if o.error:
            row[f"{name}_error"] = o.error
    return row


def _by_kind(results: list[CaseResult]) -> dict[str, dict[str, int]]:
    kinds: dict[str, Counter[str]] = {}
    for r in results:
        k = kinds.setdefault(r.case.kind, Counter())
        k["cases"] += 1
        k["ovs"] += r.outcomes["ovs"].passed
        k["vswitch"] += r.outcomes["vswitch"].passed
    return {k: dict(v) for k, v in kinds.items()}


def plot(r: dict[str, Any], path: str) -> None:
    """Per kind of case: cases, passes on OVS and on the vswitch; the overall ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = sorted(r["kinds"])
    fig, (a, b) = plt.subplots(1, 2, figsize=(15, 4.8), gridspec_kw={"width_ratios": [4, 1]})
    xs = range(len(kinds))
    for off, key, label, color in ((-0.27, "cases", "cases", "#bbb"),
                                   (0.0, "ovs", "pass on bare OVS", "#888"),
                                   (0.27, "vswitch", "pass on a vswitch", "#2a7")):  # fmt: skip
        a.bar([x + off for x in xs], [r["kinds"][k].get(key, 0) for k in kinds], 0.27,
              label=label, color=color)  # fmt: skip
    a.set_xticks(list(xs), kinds, rotation=35, ha="right")
    a.set_ylabel("cases")
    a.set_title(f"OpenFlow 1.3 conformance ({_which(r)}, {r['cases']} cases)")
    a.legend()
    b.bar(["vswitch / OVS"], [r["ratio"]], color="#2a7")
    b.axhline(r["goal"], color="#c33", lw=1, ls="--", label=f"goal {r['goal']}")
    b.set_ylim(min(0.9, r["ratio"] - 0.02), 1.0)
    b.set_title(f"ratio {r['ratio']:.4f}")
    b.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _which(r: dict[str, Any]) -> str:
    which = f"{r['subset']} set"
    return which + (f", cases matching {r['pattern']!r}" if r.get("pattern") else "")


def table(r: dict[str, Any]) -> str:
    lines = [
        f"OpenFlow 1.3 conformance, {_which(r)}: the same {r['cases']} cases against a "
        "bare OVS bridge and a vswitch on one",
        f"{'kind':26} {'cases':>6} {'bare OVS':>9} {'vswitch':>8} {'ratio':>6}",
    ]
    for k in sorted(r["kinds"]):
        v = r["kinds"][k]
        ratio = v.get("vswitch", 0) / v["ovs"] if v.get("ovs") else float("nan")
        lines.append(
            f"{k:26} {v['cases']:>6} {v.get('ovs', 0):>9} {v.get('vswitch', 0):>8} {ratio:6.3f}"
        )
    lines.append(
        f"{'all':26} {r['cases']:>6} {r['ovs_passes']:>9} {r['vswitch_passes']:>8} "
        f"{r['ratio']:6.3f}"
    )
    lines += ["", f"differences ({len(r['differences'])}):"]
    for d in r["differences"]:
        why = d["reason"] if d["allowed"] else "NOT AN ISOLATION REFUSAL:\n    " + d["diff"]
        lines.append(f"  {d['case']} (fails on {d['fails_on']}): {why}")
    if r["ovs_failures"]:
        lines += ["", f"failing on bare OVS too: {', '.join(r['ovs_failures'])}"]
    lines += [
        "",
        f"cases where OVS departs from the spec (its behaviour is the reference): "
        f"{len(r['ovs_deviations'])}",
        "",
        f"goal: vswitch passes / OVS passes >= {r['goal']}   "
        f"{'met' if r['goals']['ratio'] else 'NOT met'} ({r['ratio']:.4f})",
        f"goal: every difference an isolation refusal   "
        f"{'met' if r['goals']['explained'] else 'NOT met'}",
        f"run time {r['seconds']:.0f} s",
    ]
    return "\n".join(lines)


def run_conformance(
    quick: bool = False, as_json: bool = False, plot_path: str | None = None,
    pattern: str | None = None,
) -> int:  # fmt: skip
    result = run(quick, pattern)
    emit(result, plot=plot, table=table, plot_path=plot_path, as_json=as_json,
         default_plot="bench-conformance.png")  # fmt: skip
    return 1 if result["unexplained"] else 0


__all__ = ["run", "run_conformance"]

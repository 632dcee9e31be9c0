"""OpenFlow 1.3 conformance of a vswitch, measured against a bare Open vSwitch bridge.

The CI subset of `testbed/conformance` (every kind of case, none that takes seconds): each
case runs against a bare bridge whose controller is this test, and against a vswitch on a
bridge of the same kind whose tenant controller is this test.  The vswitch must pass at
least 97% of what bare OVS passes, and every case it fails that OVS passes must be an
isolation refusal of the documented allow-list (catalog.ALLOWED, README "Conformance").
`tenantvisor bench conformance` runs the whole catalogue.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tenantvisor.testbed.conformance.catalog import ALLOWED, ci_cases
from tenantvisor.testbed.conformance.harness import CaseResult, diff, rig, run_cases, summary

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def results() -> Iterator[list[CaseResult]]:
    with rig() as r:
        yield run_cases(r, ci_cases())


def _failures(results: list[CaseResult], target: str) -> str:
    return "\n".join(
        f"{r.case.name}:\n  " + diff(r.expected, r.outcomes[target].observed).replace("\n", "\n  ")
        for r in results
        if not r.outcomes[target].passed
    )


def test_the_subset_covers_every_kind_of_case(results: list[CaseResult]) -> None:
    kinds = {r.case.kind for r in results}
    assert {"match", "match_in_table_1", "action", "set_field", "set_field_in_action_set",
            "set_field_in_bucket", "set_field_in_packet_out", "instruction", "group", "meter",
            "flow_mod", "packet_in", "packet_out", "stats", "message"} <= kinds  # fmt: skip


def test_bare_ovs_passes_every_case_of_the_subset(results: list[CaseResult]) -> None:
    """The expectations are the spec's, or OVS's own behaviour where it departs from it:
    a bare bridge failing one means the harness (or OVS) changed, not the vswitch."""
    assert all(r.outcomes["ovs"].passed for r in results), _failures(results, "ovs")


def test_every_difference_is_a_documented_isolation_refusal(results: list[CaseResult]) -> None:
    got = summary(results, ALLOWED)
    assert got["unexplained"] == [], _failures(results, "vswitch")
    # and the allow-list says no more than is true: what it names does fail on a vswitch
    named = [r for r in results if r.case.name in ALLOWED]
    assert named and all(not r.outcomes["vswitch"].passed for r in named)


def test_a_vswitch_passes_97_percent_of_what_bare_ovs_passes(results: list[CaseResult]) -> None:
    got = summary(results, ALLOWED)
    assert got["ratio"] >= 0.97, (got["ratio"], _failures(results, "vswitch"))

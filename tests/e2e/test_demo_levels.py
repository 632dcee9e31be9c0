"""The demo's two tenants (same addresses, controllers we did not write: ovs-testcontroller)
with both networks at a flow-rule reduction level: every host reaches every one of its
tenant's hosts and nothing crosses between tenants (`tenantvisor demo --scalability`)."""

from __future__ import annotations

import re

import pytest

from tenantvisor.demo import run_demo

pytestmark = pytest.mark.root


@pytest.mark.parametrize("level", ["hop", "lite"])
def test_the_demo_passes_at_a_reduction_level(
    level: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_demo("two-tier", scalability=level) == 0, capsys.readouterr().out[-3000:]
    out = capsys.readouterr().out
    assert f"level {level}" in out and "PASS" in out
    m = re.search(r"(\d+) physical rules for them on the pswitches \((\d+) shared", out)
    assert m is not None and int(m.group(2)) > 0, out[-600:]  # it did reduce

"""Faucet, a controller we did not write, as a tenant controller of the test bed.

The root test runs Faucet directly on a plain fabric (no hypervisor): it proves the venv, the
config builder and the controller wrapper, so that a later failure of Faucet *through*
tenantvisor points at the hypervisor.  It never skips: ``make test`` installs Faucet first, and
without it :class:`FaucetController` installs it on first use.
"""

from __future__ import annotations

import time
from itertools import permutations
from pathlib import Path

import pytest
import yaml

from tenantvisor.testbed.fabric import Fabric
from tenantvisor.testbed.faucet import (
    FAUCET_ROUTER_MAC,
    FaucetConfig,
    FaucetController,
    FaucetError,
    parse_prometheus,
)
from tenantvisor.testbed.topo import linear
from tests.flow.test_testbed import leftovers


def _by_hand() -> FaucetConfig:
    """The config ``from_topology(linear(3, 1))`` should produce, spelled out."""
    cfg = FaucetConfig()
    cfg.add_vlan("office", 100)
    s1 = cfg.add_dp("s1", 1)
    s1.add_port(1, native_vlan="office", description="host h1")
    s1.add_port(2, tagged_vlans=["office"], description="link to s2")
    s2 = cfg.add_dp("s2", 2)
    s2.add_port(1, native_vlan="office", description="host h2")
    s2.add_port(2, tagged_vlans=["office"], description="link to s1")
    s2.add_port(3, tagged_vlans=["office"], description="link to s3")
    s3 = cfg.add_dp("s3", 3)
    s3.add_port(1, native_vlan="office", description="host h3")
    s3.add_port(2, tagged_vlans=["office"], description="link to s2")
    return cfg


def test_config_from_topology_matches_hand_built(tmp_path: Path) -> None:
    cfg = FaucetConfig.from_topology(linear(3, 1), vlan="office", vid=100)
    assert cfg.to_dict() == _by_hand().to_dict()
    written = yaml.safe_load(cfg.write(tmp_path / "faucet.yaml").read_text())
    assert written["vlans"] == {"office": {"vid": 100}}
    assert written["dps"]["s2"] == {
        "dp_id": 2,
        "hardware": "Open vSwitch",
        "interfaces": {
            1: {"description": "host h2", "native_vlan": "office"},
            2: {"description": "link to s1", "tagged_vlans": ["office"]},
            3: {"description": "link to s3", "tagged_vlans": ["office"]},
        },
    }
    # Virtual dp_ids (Faucet through tenantvisor) replace the topology's.
    virt = FaucetConfig.from_topology(linear(3, 1), dp_ids={"s1": 0x101, "s3": 0x103})
    assert virt.dp_ids == [0x101, 2, 0x103]


def test_config_rejects_what_faucet_would() -> None:
    cfg = _by_hand()
    cfg.dp("s3").add_port(5, native_vlan="nosuch")
    with pytest.raises(ValueError, match="undefined VLANs"):
        cfg.validate()
    cfg = _by_hand()
    cfg.add_dp("s4", 2).add_port(1, native_vlan="office")
    with pytest.raises(ValueError, match="duplicate dp_id"):
        cfg.validate()
    cfg = _by_hand()
    cfg.dp("s1").add_port(3)
    with pytest.raises(ValueError, match="neither native_vlan nor tagged_vlans"):
        cfg.validate()
    with pytest.raises(ValueError, match="configured twice"):
        cfg.dp("s1").add_port(1, native_vlan="office")
    topo = linear(2, 1)
    topo.set_host_address("h1", mac=FAUCET_ROUTER_MAC)
    with pytest.raises(ValueError, match="router MAC"):
        FaucetConfig.from_topology(topo)


def test_parse_prometheus() -> None:
    text = (
        "# HELP dp_status status of datapaths\n"
        "# TYPE dp_status gauge\n"
        'dp_status{dp_id="0x1",dp_name="s1"} 1.0\n'
        'dp_status{dp_id="0x2",dp_name="s\\"2"} 0.0\n'
        "faucet_config_load_error 0.0\n"
    )
    assert parse_prometheus(text) == [
        ("dp_status", {"dp_id": "0x1", "dp_name": "s1"}, 1.0),
        ("dp_status", {"dp_id": "0x2", "dp_name": 's"2'}, 0.0),
        ("faucet_config_load_error", {}, 0.0),
    ]


@pytest.mark.root
def test_faucet_rejects_bad_config_clearly(tmp_path: Path) -> None:
    """Faucet keeps running on a config it rejects; start() must turn that into an error."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "vlans: {office: {vid: 100}}\n"
        "dps: {s1: {dp_id: 1, interfaces: {1: {native_vlan: nosuch}}}}\n"
    )
    ctl = FaucetController(bad, tmp_path)
    with pytest.raises(FaucetError, match="rejected"):
        ctl.start()
    assert not ctl.running


@pytest.mark.root
def test_faucet_drives_linear_fabric(tmp_path: Path) -> None:
    """Faucet alone on linear(3, 1): trunks between switches, host ports untagged in one VLAN;
    every host reaches every other, and Faucet reports all three dps up."""
    topo = linear(3, 1)
    cfg = FaucetConfig.from_topology(topo, vlan="office", vid=100)
    with FaucetController(cfg, tmp_path / "faucet") as faucet:
        assert faucet.target == f"tcp:127.0.0.1:{faucet.port}"
        assert faucet.connected_dps() == {1: False, 2: False, 3: False}
        with Fabric(topo, controller=faucet.target) as fab:
            # Faucet's own view: up once it has pushed its pipeline to the switch.  (Quicker
            # than fab.wait_connected(), which waits for OVS's periodic OVSDB status update.)
            faucet.wait_connected(timeout=30)
            assert faucet.connected_dps() == {1: True, 2: True, 3: True}
            for a, b in permutations(["h1", "h2", "h3"], 2):
                ha, hb = fab.host(a), fab.host(b)
                assert ha.ping(hb.ip, count=2, timeout=15), f"{a} -> {b}\n{faucet.log_tail()}"
            # Faucet's multi-table pipeline on the middle switch: the host port's frames get
            # tagged with VLAN 100 in table 0, and both trunks are matched on that tag.
            flows = fab.ofctl("s2", "dump-flows")
            assert "in_port=1,vlan_tci=0x0000/0x1fff actions=push_vlan:0x8100" in flows, flows
            assert "in_port=2,dl_vlan=100 actions=goto_table:1" in flows, flows
            assert "in_port=3,dl_vlan=100 actions=goto_table:1" in flows, flows
            assert "table=3" in flows, flows
            prefix = fab.prefix
        assert leftovers(prefix) == []
        # The switches went away (EOF on the channels): Faucet marks the dps down.
        deadline = time.monotonic() + 10
        while any(faucet.connected_dps().values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert faucet.connected_dps() == {1: False, 2: False, 3: False}
    assert not faucet.running
    faucet.stop()  # idempotent

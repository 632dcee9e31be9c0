"""The DNB API end to end: `tenantvisor serve` as a process, REST and tvctl, two nodes."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tenantvisor.cli import tvctl
from tenantvisor.testbed.daemon import Daemon
from tenantvisor.testbed.nodes import NodeTestbed

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[NodeTestbed, Daemon]]:
    if os.geteuid() != 0:
        pytest.fail("DNB tests need root (network namespaces, Open vSwitch)")
    rundir = Path(tempfile.mkdtemp(prefix="tv-dnb-api-"))
    tb = NodeTestbed(2)
    daemon = Daemon(rundir, f"unix:{rundir}/of.sock")
    try:
        tb.build()
        daemon.start()
        yield tb, daemon
    finally:
        daemon.stop()
        tb.close()
        shutil.rmtree(rundir, ignore_errors=True)


def _req(d: Daemon, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token or d.admin_token}"}
    return httpx.request(method, d.url + path, json=body, headers=headers, timeout=20)


def test_rest_attach_isolation_between_tenants_and_bad_input(
    served: tuple[NodeTestbed, Daemon],
) -> None:
    tb, d = served
    for node in tb.nodes.values():
        assert _req(d, "POST", "/v1/nodes", node.registration()).status_code == 201
    alice = d.rest("POST", "/v1/tenants", {"name": "alice"})["token"]
    bob = d.rest("POST", "/v1/tenants", {"name": "bob"})["token"]
    assert _req(d, "POST", "/v1/nodes", tb.nodes["node1"].registration(), alice).status_code == 403
    assert [n["name"] for n in d.rest("GET", "/v1/nodes", token=alice)] == ["node1", "node2"]
    net = d.rest("POST", "/v1/dnb/networks", {"id": "web"}, alice)
    assert net["mode"] == "dedicated" and net["segmentation_id"] > 0
    a = tb.add_vm("node1", "02:00:00:00:00:01", "10.0.0.1/24")
    b = tb.add_vm("node2", "02:00:00:00:00:02", "10.0.0.2/24")
    r = _req(
        d,
        "POST",
        "/v1/dnb/networks/web/vms",
        {"node": "node1", "mac": a.mac, "ip": "10.0.0.1/24", "interface": a.tap},
        alice,
    )
    assert r.status_code == 201, r.text
    r = _req(
        d,
        "POST",
        "/v1/dnb/networks/web/vms",
        {"node": "node2", "mac": b.mac, "ip": "10.0.0.2/24", "interface": b.tap},
        alice,
    )
    assert r.status_code == 201, r.text
    rules = r.json()["rules"]
    assert rules["local-egress"] == rules["remote-egress"] == 1
    assert rules["local-ingress"] == rules["local-flood"] == 2
    assert a.ping("10.0.0.2", timeout=3)
    # bob sees nothing of alice's
    assert _req(d, "GET", "/v1/dnb/networks/web", token=bob).status_code == 404
    assert d.rest("GET", "/v1/dnb/networks", token=bob) == []
    # bad input: 4xx with a message, nothing changed
    before = d.rest("GET", "/v1/dnb/equations")
    cases = [
        ({"node": "node7", "mac": "02:00:00:00:00:09", "ip": "10.0.0.9/24", "interface": "x"}, 404),
        ({"node": "node2", "mac": a.mac, "ip": "10.0.0.9/24", "interface": "x"}, 409),
        (
            {
                "node": "node2",
                "mac": "02:00:00:00:00:09",
                "ip": "10.0.0.9/24",
                "interface": "a-very-long-ifname",
            },
            400,
        ),
        (
            {
                "node": "node2",
                "mac": "02:00:00:00:00:09",
                "ip": "10.0.0.9/24",
                "interface": "notthere",
            },
            409,
        ),
        ({"node": "node2", "mac": "ff:ff:ff:ff:ff:ff", "ip": "10.0.0.9/24", "interface": "x"}, 400),
        ({"node": "node2", "mac": "02:00:00:00:00:09", "ip": "10.0.0.9", "interface": "x"}, 400),
        ({"node": "node2", "extra": 1}, 422),
    ]
    for body, code in cases:
        r = _req(d, "POST", "/v1/dnb/networks/web/vms", body, alice)
        assert r.status_code == code, (body, r.text)
        assert r.json()["error"]
    r = _req(d, "POST", "/v1/dnb/networks", {"id": "waytoolongid"}, alice)
    assert r.status_code == 400 and "15" in r.json()["error"]
    r = _req(
        d,
        "POST",
        "/v1/nodes",
        {"name": "ghost", "ovsdb": "unix:/nonexistent/db.sock", "transport_ip": "10.123.0.77/24"},
    )
    assert r.status_code == 424 and "does not answer" in r.json()["error"]
    assert d.rest("GET", "/v1/dnb/equations") == before
    assert before["holds"]
    # detach both: the network's bridges go from both nodes
    for vm in (a, b):
        assert _req(d, "DELETE", f"/v1/dnb/networks/web/vms/{vm.mac}", token=alice).is_success
    eq = d.rest("GET", "/v1/dnb/equations")
    assert eq["total_bridges"] == 4 and eq["holds"]


def test_tvctl_drives_nodes_networks_and_vms(
    served: tuple[NodeTestbed, Daemon], capsys: pytest.CaptureFixture[str]
) -> None:
    tb, d = served
    base = ["--url", d.url, "--token", d.admin_token]
    if not d.rest("GET", "/v1/nodes"):
        for node in tb.nodes.values():
            r = node.registration()
            assert (
                tvctl.main(
                    [
                        *base,
                        "node-add",
                        r["name"],
                        r["ovsdb"],
                        r["transport_ip"],
                        "--netns",
                        r["netns"],
                    ]
                )
                == 0
            )
    tenant = d.rest("POST", "/v1/tenants", {"name": "carol"})
    assert (
        tvctl.main([*base, "dnet-add", "cnb", "--mode", "common", "--tenant", str(tenant["id"])])
        == 0
    )
    vm = tb.add_vm("node1", "02:00:00:00:00:31", "10.9.0.1/24")
    assert tvctl.main([*base, "vm-attach", "cnb", "node1", vm.tap, vm.mac, "10.9.0.1/24"]) == 0
    capsys.readouterr()
    assert tvctl.main([*base, "vm-list", "cnb"]) == 0
    assert vm.mac in capsys.readouterr().out
    assert tvctl.main([*base, "dnet-set-controller", "cnb", "tcp:10.123.0.250:6653"]) == 1
    assert "common mode" in capsys.readouterr().err
    assert tvctl.main([*base, "vm-detach", "cnb", vm.mac]) == 0
    assert tvctl.main([*base, "dnet-del", "cnb"]) == 0
    assert tvctl.main([*base, "node-list"]) == 0

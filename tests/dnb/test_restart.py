"""DNB intent in the store, and a restart that reconciles nodes instead of rebuilding them.

Each test gets three emulated compute nodes and a private embedded ovsdb-server (in pytest's
tmp dir, stopped whatever happens).  "A restart" is what the daemon does: a new Store client
loads the snapshot, a new DnbManager takes its DNB intent back (`restore`) and reconciles
every reachable node against what it holds.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tenantvisor.api.app import create_app
from tenantvisor.dedicated import planner
from tenantvisor.dedicated.manager import DnbManager
from tenantvisor.dedicated.model import Intent
from tenantvisor.dedicated.ovsdb import NodeUnreachable
from tenantvisor.errors import Unavailable
from tenantvisor.physical.topology import PhysicalTopology
from tenantvisor.store import EmbeddedServer, Store, StoreUnavailable
from tenantvisor.testbed.daemon import Daemon
from tenantvisor.testbed.nodes import VM, EmulatedNode, NodeTestbed
from tenantvisor.virtual.manager import NetworkManager

from ..api.conftest import quiet_testclient

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.root

ADMIN = "admin-token"
_FLOW = re.compile(r"cookie=(0x[0-9a-f]+), duration=([0-9.]+)s, table=\d+, n_packets=(\d+)")


def wait_until(pred: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# --- what a node holds, to prove "untouched" -----------------------------------------------
def row_ids(node: EmulatedNode) -> dict[str, dict[str, str]]:
    """OVSDB row UUIDs of every bridge, port, interface (by name) and controller (by
    target): a row deleted and re-created gets a new UUID."""
    out: dict[str, dict[str, str]] = {}
    for table, col in (
        ("Bridge", "name"),
        ("Port", "name"),
        ("Interface", "name"),
        ("Controller", "target"),
    ):
        text = node.ovs.vsctl(
            "--format=csv", "--data=bare", "--no-headings", f"--columns=_uuid,{col}", "list", table
        )
        rows = (line.split(",", 1) for line in text.splitlines() if line)
        out[table] = {name: uuid for uuid, name in rows}
    return out


def ofports(node: EmulatedNode) -> dict[str, str]:
    text = node.ovs.vsctl(
        "--format=csv", "--data=bare", "--no-headings", "--columns=name,ofport", "list", "Interface"
    )
    return dict(line.split(",", 1) for line in text.splitlines() if line)


def rules(node: EmulatedNode) -> dict[str, dict[int, tuple[float, int]]]:
    """Per bridge: each rule's cookie -> (duration, n_packets); a rule re-added starts over."""
    out: dict[str, dict[int, tuple[float, int]]] = {}
    for br in node.ovs.vsctl("list-br").split():
        dump = node.ovs.ofctl("-O", "OpenFlow13", "dump-flows", br)
        out[br] = {int(c, 16): (float(d), int(n)) for c, d, n in _FLOW.findall(dump)}
    return out


def assert_rules_kept(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert before.keys() == after.keys()
    for br, flows in before.items():
        assert flows.keys() == after[br].keys(), br
        for cookie, (duration, packets) in flows.items():
            d2, p2 = after[br][cookie]
            assert d2 >= duration and p2 >= packets, (
                br,
                hex(cookie),
                (duration, packets),
                (d2, p2),
            )


def holdings(tb: NodeTestbed) -> dict[str, Any]:
    """Everything of every node that a restart must leave exactly as it was."""
    out = {}
    for name, node in tb.nodes.items():
        addrs = subprocess.run(
            ["ip", "-n", node.netns, "-4", "-o", "addr", "show"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        out[name] = {
            "rows": row_ids(node),
            "ofports": ofports(node),
            "addresses": sorted(
                line.split()[1] + " " + line.split()[3] for line in addrs.splitlines()
            ),
        }
    return out


class Pinger:
    """``ping`` from one VM to another at 20 ms intervals for ``seconds`` (or until
    ``result(stop=True)``), counted at the end."""

    def __init__(self, vm: VM, ip: str, seconds: float = 600.0) -> None:
        self.count = int(seconds / 0.02)
        self.proc = vm.popen(
            ["ping", "-n", "-i", "0.02", "-c", str(self.count), ip],
            stdout=subprocess.PIPE,
            text=True,
        )

    def result(self, stop: bool = False) -> tuple[int, int]:
        """(sent, received).  Stopped, the request in flight at that moment is not counted
        as sent: its reply had no time to come (it made 1 of 127 "lost" under load)."""
        if stop:
            self.proc.send_signal(signal.SIGINT)  # ping prints its summary and exits
        out, _ = self.proc.communicate(timeout=60)
        m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        assert m, out
        sent, got = int(m.group(1)), int(m.group(2))
        answered = {int(x) for x in re.findall(r"icmp_seq=(\d+)", out)}
        if stop and sent and sent not in answered:
            sent -= 1
        return sent, got


# --- the testbed ---------------------------------------------------------------------------
@dataclass
class Bed:
    tb: NodeTestbed
    server: EmbeddedServer
    stores: list[Store] = field(default_factory=list)
    managers: list[DnbManager] = field(default_factory=list)
    macs: int = 0

    def store(self, timeout: float = 5.0) -> Store:
        s = Store(self.server.remote, timeout=timeout).start()
        self.stores.append(s)
        return s

    def manager(self, store: Store | None) -> DnbManager:
        m = DnbManager(store=store, ovsdb_timeout=2.0)
        self.managers.append(m)
        return m

    def restart(self, old: DnbManager) -> tuple[DnbManager, dict[str, str]]:
        """What a daemon restart does: drop the manager, load the store, restore."""
        old.close()
        store = self.store()
        new = self.manager(store)
        return new, new.restore(store.load().dnb)

    def vm(self, dnb: DnbManager, net: str, node: str, ip: str) -> VM:
        self.macs += 1
        vm = self.tb.add_vm(node, f"02:00:00:00:01:{self.macs:02x}", ip)
        dnb.attach_vm(net, None, node, vm.mac, ip, vm.tap)
        return vm


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[Bed]:
    if os.geteuid() != 0:
        pytest.fail("DNB tests need root (network namespaces, Open vSwitch)")
    if shutil.which("ovsdb-server") is None:
        pytest.skip("ovsdb-server is not installed")
    tb = NodeTestbed(3)
    server = EmbeddedServer(tmp_path / "state")
    b = Bed(tb, server)
    try:
        tb.build()
        server.start()
        yield b
    finally:
        for m in b.managers:
            m.close()
        for s in b.stores:
            s.stop()
        server.stop()
        tb.close()


def registered(bed: Bed) -> DnbManager:
    dnb = bed.manager(bed.store())
    for node in bed.tb.nodes.values():
        dnb.add_node(**node.registration())
    return dnb


def api(dnb: DnbManager) -> TestClient:
    TestClient = quiet_testclient()
    return TestClient(
        create_app(NetworkManager(PhysicalTopology(), ADMIN), dnb=dnb),
        headers={"Authorization": f"Bearer {ADMIN}"},
    )


def api_view(client: TestClient) -> dict[str, Any]:
    out: dict[str, Any] = {"nodes": client.get("/v1/nodes").json()}
    nets = client.get("/v1/dnb/networks").json()
    out["networks"] = nets
    for net in nets:
        out[net["id"]] = {
            "vms": client.get(f"/v1/dnb/networks/{net['id']}/vms").json(),
            "ports": client.get(f"/v1/dnb/networks/{net['id']}/ports").json(),
        }
    return out


# --- tests ---------------------------------------------------------------------------------
def test_a_restart_reconciles_without_rebuilding_and_vms_keep_pinging(bed: Bed) -> None:
    dnb = registered(bed)
    dnb.create_network(1, "red")
    dnb.create_network(2, "cnb", mode="common")
    dnb.create_network(3, "ctl")
    a = bed.vm(dnb, "red", "node1", "192.168.1.1/24")
    b = bed.vm(dnb, "red", "node2", "192.168.1.2/24")
    bed.vm(dnb, "red", "node3", "192.168.1.3/24")
    c1 = bed.vm(dnb, "cnb", "node1", "192.168.2.1/24")
    bed.vm(dnb, "cnb", "node3", "192.168.2.3/24")
    bed.vm(dnb, "ctl", "node2", "192.168.3.2/24")
    bed.vm(dnb, "ctl", "node3", "192.168.3.3/24")
    red = planner.endpoint_ip(dnb.intent.networks["red"], dnb.intent.nodes["node2"]).ip
    dnb.add_tenant_port("red", None, "node1", "mytun", "vxlan", str(red), 77)
    dnb.set_controller("ctl", None, f"tcp:{bed.tb.site_ip}:6653")
    dnb.reassert()  # a first controller makes OVS flush the bridge's rules
    assert a.ping("192.168.1.2", timeout=3) and c1.ping("192.168.2.3", timeout=3)
    view = api_view(api(dnb))
    assert bed.store().load().dnb == dnb.intent  # every change was written

    before = holdings(bed.tb)
    flows_before = {n: rules(node) for n, node in bed.tb.nodes.items()}
    pings = [Pinger(a, "192.168.1.2", 3.0), Pinger(c1, "192.168.2.3", 3.0)]
    time.sleep(0.5)
    dnb2, outcome = bed.restart(dnb)
    assert outcome == dict.fromkeys(bed.tb.nodes, "in sync")
    assert dnb2.intent == dnb.intent
    for p in pings:
        sent, got = p.result()
        assert got == sent, f"{sent - got} of {sent} pings lost across the restart"
    # nothing was deleted and re-created: rows, OpenFlow ports, rules (durations, counters),
    # addresses; the tenant's controller row included
    assert holdings(bed.tb) == before
    for name, node in bed.tb.nodes.items():
        assert_rules_kept(flows_before[name], rules(node))
    assert before["node1"]["rows"]["Controller"] == {}
    assert list(before["node2"]["rows"]["Controller"]) == [f"tcp:{bed.tb.site_ip}:6653"]
    # the restored intent answers the API as before, and changes work on top of it
    client = api(dnb2)
    assert api_view(client) == view
    assert client.get("/v1/nodes/node1").json()["in_sync"] is True
    assert dnb2.equations()["holds"]
    bed.vm(dnb2, "red", "node2", "192.168.1.22/24")
    assert a.ping("192.168.1.22", timeout=3)
    dnb2.detach_vm("red", None, b.mac)
    assert bed.store().load().dnb == dnb2.intent


def test_a_change_while_the_store_is_down_is_refused_and_the_nodes_stay_as_they_were(
    bed: Bed,
) -> None:
    dnb = registered(bed)
    dnb.create_network(1, "s")
    a = bed.vm(dnb, "s", "node1", "192.168.4.1/24")
    b = bed.vm(dnb, "s", "node2", "192.168.4.2/24")
    spare = bed.tb.add_vm("node3", "02:00:00:00:02:01", "192.168.4.3/24")
    intent = dnb.intent.copy()
    before = holdings(bed.tb)
    snaps = {n: dnb._db[n].snapshot() for n in bed.tb.nodes}
    cookies = {n: rules(node) for n, node in bed.tb.nodes.items()}

    store = bed.stores[0]
    bed.server.stop()
    store.timeout = 1.0
    wait_until(lambda: not store.connected)
    peer = str(planner.endpoint_ip(dnb.intent.networks["s"], dnb.intent.nodes["node2"]).ip)
    changes = [
        lambda: dnb.attach_vm("s", None, "node3", spare.mac, "192.168.4.3/24", spare.tap),
        lambda: dnb.detach_vm("s", None, b.mac),
        lambda: dnb.create_network(1, "t"),
        lambda: dnb.delete_network("s", None),  # refused before the store: it has VMs
        lambda: dnb.set_controller("s", None, "tcp:10.123.0.250:6653"),
        lambda: dnb.add_tenant_port("s", None, "node1", "mine", "gre", peer),
        lambda: dnb.remove_node("node3"),
    ]
    for change in changes:
        with pytest.raises(Exception) as exc:
            change()
        if "still has VMs" in str(exc.value):
            continue
        assert isinstance(exc.value, Unavailable) and exc.value.http_status == 503, exc.value
        assert "DNB intent store unavailable" in str(exc.value)
        assert bed.server.remote in str(exc.value)
        assert dnb.intent == intent
    # through the API too: 503 with the store named
    r = api(dnb).post("/v1/dnb/networks", json={"id": "u", "tenant_id": None})
    assert r.status_code in (400, 503)
    r = api(dnb).delete(f"/v1/dnb/networks/s/vms/{b.mac}")
    assert r.status_code == 503 and bed.server.remote in r.json()["error"]
    # refused before anything was touched: every node holds the same rows, rules, addresses
    assert holdings(bed.tb) == before
    for n, node in bed.tb.nodes.items():
        assert_rules_kept(cookies[n], rules(node))
    assert {n: dnb._db[n].snapshot() for n in bed.tb.nodes} == snaps
    assert a.ping("192.168.4.2", timeout=3)

    # the store is back: the next change goes through and the store holds exactly the intent
    bed.server.start()
    store.timeout = 15.0  # the IDL reconnects with backoff
    dnb.attach_vm("s", None, "node3", spare.mac, "192.168.4.3/24", spare.tap)
    assert a.ping("192.168.4.3", timeout=3)
    assert bed.store(timeout=15.0).load().dnb == dnb.intent


class FailingStore:
    """A store that is connected but whose every write fails (after the nodes changed)."""

    def __init__(self, real: Store) -> None:
        self.real = real
        self.remote = real.remote
        self.timeout = 1.0
        self.connected = True
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any) -> None:
            self.calls.append(name)
            raise StoreUnavailable(f"{name}: store at {self.remote}: no reply within 1 s")

        return fail


def test_a_store_that_fails_after_the_nodes_changed_gets_them_undone(bed: Bed) -> None:
    dnb = registered(bed)
    dnb.create_network(1, "f")
    a = bed.vm(dnb, "f", "node1", "192.168.8.1/24")
    b = bed.vm(dnb, "f", "node2", "192.168.8.2/24")
    spare = bed.tb.add_vm("node3", "02:00:00:00:04:01", "192.168.8.3/24")
    intent = dnb.intent.copy()
    before = holdings(bed.tb)
    cookies = {n: rules(node) for n, node in bed.tb.nodes.items()}
    snaps = {n: dnb._db[n].snapshot() for n in bed.tb.nodes}
    real = dnb.store
    failing = FailingStore(bed.stores[0])
    dnb.store = failing
    with pytest.raises(Unavailable) as exc:
        dnb.attach_vm("f", None, "node3", spare.mac, "192.168.8.3/24", spare.tap)
    assert exc.value.http_status == 503 and bed.server.remote in str(exc.value)
    assert failing.calls == ["put_vm_binding"]
    assert dnb.intent == intent
    # an attach only added rows: undoing it removed exactly those, every row that was there
    # stays; the peers' flood rule it replaced is back (same rule, so same cookie)
    assert holdings(bed.tb) == before
    assert {
        n: {br: set(f) for br, f in rules(node).items()} for n, node in bed.tb.nodes.items()
    } == {n: {br: set(f) for br, f in c.items()} for n, c in cookies.items()}
    # a detach removed: undoing it builds the same things again (new rows, same contents)
    with pytest.raises(Unavailable):
        dnb.detach_vm("f", None, b.mac)
    assert {n: dnb._db[n].snapshot() for n in bed.tb.nodes} == snaps
    assert {
        n: {br: set(f) for br, f in rules(node).items()} for n, node in bed.tb.nodes.items()
    } == {n: {br: set(f) for br, f in c.items()} for n, c in cookies.items()}
    assert a.ping("192.168.8.2", timeout=3)
    # the store may have taken a write that timed out: it is marked dirty and rewritten whole
    dnb.store = real
    dnb.upkeep()
    assert bed.store().load().dnb == dnb.intent == intent


def test_a_change_that_was_never_stored_is_removed_by_the_restart(bed: Bed) -> None:
    dnb = registered(bed)
    dnb.create_network(1, "g")
    a = bed.vm(dnb, "g", "node1", "192.168.5.1/24")
    bed.vm(dnb, "g", "node2", "192.168.5.2/24")
    stored = dnb.store
    dnb.store = None  # as if the daemon died between the nodes and the store
    c = bed.vm(dnb, "g", "node3", "192.168.5.3/24")
    dnb.create_network(1, "lost")
    bed.vm(dnb, "lost", "node1", "192.168.6.1/24")
    dnb.store = stored
    assert "brint-g" in dnb._db["node3"].snapshot() and a.ping("192.168.5.3", timeout=3)

    dnb2, outcome = bed.restart(dnb)
    assert outcome == dict.fromkeys(bed.tb.nodes, "in sync")
    assert set(dnb2.intent.networks) == {"g"} and len(dnb2.intent.vms) == 2
    snap3 = dnb2._db["node3"].snapshot()
    assert sorted(snap3) == ["br-int", "br-tun"] and "ex-g" not in snap3["br-tun"]
    snap1 = dnb2._db["node1"].snapshot()
    assert "brint-lost" not in snap1 and "ex-lost" not in snap1["br-tun"]
    assert "g-g-3" not in snap1["brtun-g"]
    eq = dnb2.equations()
    assert eq["holds"] and eq["networks"]["g"]["tunnels"] == 1, eq
    # provider rules are exactly the plan's: stale ones (to node3's VM) went by cookie
    for name in bed.tb.nodes:
        plan = dnb2.plans[name]
        for br in plan.bridges:
            assert dnb2._flows[name].cookies(br) == {f.cookie for f in plan.flows_on(br)}, br
    assert a.ping("192.168.5.2", timeout=3)
    assert not a.ping(str(c.ip.ip), timeout=1)
    # a node whose GRE key was changed behind our back is corrected, nothing else
    bed.tb.nodes["node1"].ovs.vsctl("set", "Interface", "g-g-2", "options:key=4242")
    ids = row_ids(bed.tb.nodes["node1"])
    dnb3, _ = bed.restart(dnb2)
    assert dnb3._db["node1"].snapshot()["brtun-g"]["g-g-2"]["options"]["key"] == str(
        dnb3.intent.networks["g"].segmentation_id
    )
    ids2 = row_ids(bed.tb.nodes["node1"])
    assert ids2["Bridge"] == ids["Bridge"]
    assert {k: v for k, v in ids2["Port"].items() if k != "g-g-2"} == {
        k: v for k, v in ids["Port"].items() if k != "g-g-2"
    }
    assert a.ping("192.168.5.2", timeout=3)


def test_an_unreachable_node_does_not_block_the_restart_and_is_reconciled_later(
    bed: Bed,
) -> None:
    dnb = registered(bed)
    dnb.create_network(1, "u")
    a = bed.vm(dnb, "u", "node1", "192.168.7.1/24")
    b = bed.vm(dnb, "u", "node2", "192.168.7.2/24")
    spare = bed.tb.add_vm("node2", "02:00:00:00:03:01", "192.168.7.9/24")
    node2 = bed.tb.nodes["node2"]
    node2.ovs.stop(cleanup=False)  # the node is away (and forgets everything: new conf.db)
    t0 = time.monotonic()
    dnb2, outcome = bed.restart(dnb)
    assert time.monotonic() - t0 < 5
    assert outcome["node1"] == outcome["node3"] == "in sync"
    assert outcome["node2"].startswith("unreachable")
    assert api(dnb2).get("/v1/dnb/networks/u/vms").json()[1]["node"] == "node2"
    with pytest.raises(NodeUnreachable) as exc:
        dnb2.attach_vm("u", None, "node2", spare.mac, "192.168.7.9/24", spare.tap)
    assert exc.value.http_status == 424
    assert dnb2.sync_nodes()["node2"].startswith("unreachable")  # backoff: not dialled again

    node2.ovs.start()
    deadline = time.monotonic() + 20
    while dnb2.sync_nodes(force=True)["node2"] != "in sync":
        assert time.monotonic() < deadline, "node2 never came back"
        time.sleep(0.2)
    snap = dnb2._db["node2"].snapshot()
    assert sorted(snap) == ["br-int", "br-tun", "brint-u", "brtun-u"]
    assert b.tap in snap["brint-u"]
    assert a.ping("192.168.7.2", timeout=5)
    dnb2.attach_vm("u", None, "node2", spare.mac, "192.168.7.9/24", spare.tap)
    assert a.ping("192.168.7.9", timeout=3)
    assert bed.store().load().dnb == dnb2.intent


def test_without_a_store_nothing_is_written_and_restore_needs_an_empty_manager(bed: Bed) -> None:
    dnb = bed.manager(None)
    node = bed.tb.nodes["node1"]
    dnb.add_node(**node.registration())
    dnb.create_network(1, "n")
    assert bed.store().load().dnb == Intent()
    with pytest.raises(RuntimeError):
        dnb.restore(dnb.intent)


def test_the_daemon_restarts_with_its_dnb_intent_and_leaves_the_nodes_untouched(
    bed: Bed, tmp_path: Path
) -> None:
    """`tenantvisor serve` as a process: stopped (SIGTERM) and killed (-9), each time a new
    process on the same state directory; the API answers as before, VMs never stop pinging,
    no row or rule on a node is re-created."""
    tb = bed.tb
    rundir = tmp_path / "daemon"
    state = tmp_path / "tv-state"

    def daemon() -> Daemon:
        d = Daemon(rundir, f"unix:{rundir}/of.sock", state_dir=state, admin_token=ADMIN)
        daemons.append(d)
        return d.start()

    daemons: list[Daemon] = []
    try:
        d = daemon()
        for node in tb.nodes.values():
            d.rest("POST", "/v1/nodes", node.registration())
        alice = d.rest("POST", "/v1/tenants", {"name": "alice"})["token"]
        d.rest("POST", "/v1/dnb/networks", {"id": "web"}, alice)
        d.rest("POST", "/v1/dnb/networks", {"id": "cn", "mode": "common"}, alice)
        vms = {}
        for i, (net, node) in enumerate(
            [("web", "node1"), ("web", "node2"), ("web", "node3"), ("cn", "node1"), ("cn", "node2")]
        ):
            ip = f"10.{int(net == 'cn')}.0.{i + 1}/24"
            vm = tb.add_vm(node, f"02:00:00:00:05:{i:02x}", ip)
            body = {"node": node, "mac": vm.mac, "ip": ip, "interface": vm.tap}
            d.rest("POST", f"/v1/dnb/networks/{net}/vms", body, alice)
            vms[i] = vm

        def view(d: Daemon) -> Any:
            return (
                d.rest("GET", "/v1/nodes"),
                d.rest("GET", "/v1/dnb/networks"),
                d.rest("GET", "/v1/dnb/networks/web/vms", token=alice),
                d.rest("GET", "/v1/dnb/networks/cn", token=alice),
                d.rest("GET", "/v1/dnb/equations"),
            )

        assert vms[0].ping("10.0.0.2", timeout=3) and vms[3].ping("10.1.0.5", timeout=3)
        before, api_before = holdings(tb), view(d)
        flows = {n: rules(node) for n, node in tb.nodes.items()}
        pings = [Pinger(vms[0], "10.0.0.3"), Pinger(vms[4], "10.1.0.4")]
        time.sleep(0.3)
        d.stop()
        d = daemon()
        assert view(d) == api_before
        d.kill()  # a crash: the store server stays and is adopted
        d = daemon()
        assert view(d) == api_before
        time.sleep(0.3)
        for p in pings:
            sent, got = p.result(stop=True)
            assert sent > 50 and got == sent, f"{sent - got} of {sent} pings lost"
        assert holdings(tb) == before
        for n, node in tb.nodes.items():
            assert_rules_kept(flows[n], rules(node))
        assert all(d.rest("GET", f"/v1/nodes/{n}")["in_sync"] for n in tb.nodes)
        assert "reconciled: holds its intent, nothing changed" in d.log_text()
        # and it works on: a VM detached and attached again through the restored intent
        r = httpx.delete(
            f"{d.url}/v1/dnb/networks/web/vms/{vms[2].mac}",
            headers={"Authorization": f"Bearer {alice}"},
        )
        assert r.status_code == 200, r.text
        assert not vms[0].ping("10.0.0.3", timeout=1)
    finally:
        for x in daemons:
            x.stop()


def test_with_several_instances_one_manages_the_nodes_and_a_survivor_takes_them_over(
    bed: Bed, tmp_path: Path
) -> None:
    """Two `serve --instance` processes on one store: one manages the nodes (rendezvous
    over the live instances), the other's DNB API sends callers to it (503 naming it).
    Killed with -9, the manager's nodes are taken over by the other instance after its
    lease: the same intent through its API, VMs never stop pinging, nothing re-created."""
    from tenantvisor.cluster import plan

    tb = bed.tb
    names = next(
        [f"i{k}a", f"i{k}b"]
        for k in range(100)
        if plan.rendezvous("dnb", [f"i{k}a", f"i{k}b"]) == f"i{k}a"
    )
    daemons: list[Daemon] = []

    def daemon(name: str) -> Daemon:
        rundir = tmp_path / name
        args = ["--db", bed.server.remote, "--instance", name, "--lease", "2"]
        d = Daemon(rundir, f"unix:{rundir}/of.sock", admin_token=ADMIN, extra_args=args)
        daemons.append(d)
        return d.start()

    try:
        first, second = daemon(names[0]), daemon(names[1])
        wait_until(lambda: first.get("/v1/nodes").status_code == 200, timeout=15)
        r = second.get("/v1/nodes")
        assert r.status_code == 503 and f"instance {names[0]} at {first.url}" in r.text, r.text
        for node in tb.nodes.values():
            first.rest("POST", "/v1/nodes", node.registration())
        alice = first.rest("POST", "/v1/tenants", {"name": "alice"})["token"]
        first.rest("POST", "/v1/dnb/networks", {"id": "web"}, alice)
        vms = []
        for i, node in enumerate(("node1", "node2")):
            ip = f"10.0.0.{i + 1}/24"
            vm = tb.add_vm(node, f"02:00:00:00:06:{i:02x}", ip)
            body = {"node": node, "mac": vm.mac, "ip": ip, "interface": vm.tap}
            first.rest("POST", "/v1/dnb/networks/web/vms", body, alice)
            vms.append(vm)
        assert vms[0].ping("10.0.0.2", timeout=3)
        view = (first.rest("GET", "/v1/nodes"), first.rest("GET", "/v1/dnb/networks"),
                first.rest("GET", "/v1/dnb/networks/web/vms", token=alice))  # fmt: skip
        before = holdings(tb)
        flows = {n: rules(node) for n, node in tb.nodes.items()}
        ping = Pinger(vms[0], "10.0.0.2")
        time.sleep(0.3)
        first.kill()
        wait_until(lambda: second.get("/v1/nodes").status_code == 200, timeout=20)
        assert (second.rest("GET", "/v1/nodes"), second.rest("GET", "/v1/dnb/networks"),
                second.rest("GET", "/v1/dnb/networks/web/vms", token=alice)) == view  # fmt: skip
        wait_until(lambda: all(second.rest("GET", f"/v1/nodes/{n}")["in_sync"] for n in tb.nodes))
        time.sleep(0.3)
        sent, got = ping.result(stop=True)
        assert sent > 50 and got == sent, f"{sent - got} of {sent} pings lost"
        assert holdings(tb) == before
        for n, node in tb.nodes.items():
            assert_rules_kept(flows[n], rules(node))
        assert "manages the DNB nodes now" in second.log_text()
    finally:
        for x in daemons:
            x.stop()

"""The embedded ovsdb-server and Raft clusters: files created, converted, kept; refusals."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tenantvisor.store import codec
from tenantvisor.store.errors import ServerError
from tenantvisor.store.server import Cluster, EmbeddedServer, convert_online
from tenantvisor.store.store import Store
from tenantvisor.virtual.manager import IntentChange
from tenantvisor.virtual.model import NO_LIMITS, Limits, VPortKind

from .samples import old_schema, schema_1_1, schema_1_2, schema_1_3

pytestmark = pytest.mark.root

HASH = "9f" * 32


def transact(remote: str, *ops: dict[str, Any]) -> list[Any]:
    out = subprocess.run(
        ["ovsdb-client", "--timeout=10", "transact", remote, json.dumps([codec.DB_NAME, *ops])],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: list[Any] = json.loads(out)
    assert not any(isinstance(r, dict) and "error" in r for r in result), result
    return result


def select(remote: str, table: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = transact(remote, {"op": "select", "table": table, "where": []})[0][
        "rows"
    ]
    return rows


def newer_schema(tmp: Path) -> Path:
    s = copy.deepcopy(codec.schema())
    major, minor, _ = codec.schema_version()
    s["version"] = f"{major}.{minor + 1}.0"
    s["tables"]["Tenant"]["columns"]["note"] = {"type": "string"}
    path = tmp / "tenantvisor-newer.ovsschema"
    path.write_text(json.dumps(s))
    return path


TENANT = {"op": "insert", "table": "Tenant", "row": {"id": 1, "name": "a", "token_hash": HASH}}
NETWORK = {
    "op": "insert",
    "table": "Virtual_Network",
    "row": {"id": 5, "tenant": 1, "scalability": "exact", "started": True, "generation": 1},
}
VSWITCH = {
    "op": "insert",
    "table": "Vswitch",
    "row": {
        "network": 5,
        "vdpid": "0005000000000001",
        "dpids": ["map", [[0, "8000000000000001"]]],
        "index": 1,
        "own_controllers": False,
        "routing": "spf",
    },
}


def test_start_stop_restart_keeps_data(tmp_path: Path, ovsdb_tools: None) -> None:
    srv = EmbeddedServer(tmp_path / "state")
    try:
        srv.start()
        assert srv.created and srv.converted is None
        assert srv.running and srv.db_path.exists()
        assert srv.remote == f"unix:{tmp_path / 'state' / 'tenantvisor.sock'}"
        assert oct((tmp_path / "state").stat().st_mode & 0o777) == "0o700"
        transact(srv.remote, TENANT)
        with pytest.raises(ServerError, match=r"already serves .*stop it first"):
            EmbeddedServer(tmp_path / "state").start()
        adopted = EmbeddedServer(tmp_path / "state", adopt=True).start()
        assert adopted.pid == srv.pid
        pid = srv.pid
        srv.stop()
        assert not srv.running and pid is not None
        srv.stop()  # idempotent
        again = EmbeddedServer(tmp_path / "state").start()
        assert not again.created and again.converted is None
        assert [r["name"] for r in select(again.remote, "Tenant")] == ["a"]
        again.stop()
    finally:
        srv.stop()


def test_refuses_a_database_another_server_holds(tmp_path: Path, ovsdb_tools: None) -> None:
    srv = EmbeddedServer(tmp_path / "state").start()
    srv.stop()
    d = tmp_path / "state"
    # someone else's ovsdb-server on our file, with its own pid file and socket
    subprocess.run(
        ["ovsdb-server", str(d / "tenantvisor.db"), f"--remote=punix:{tmp_path}/x.sock",
         f"--pidfile={tmp_path}/x.pid", f"--unixctl={tmp_path}/x.ctl", "--no-chdir",
         "--detach", f"--log-file={tmp_path}/x.log"],
        check=True,
    )  # fmt: skip
    pid = int((tmp_path / "x.pid").read_text())
    try:
        with pytest.raises(ServerError, match=rf"held by ovsdb-server pid {pid}"):
            srv.start()
    finally:
        os.kill(pid, signal.SIGTERM)
        for _ in range(200):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.02)
    srv.start()
    srv.stop()


def test_upgrade_converts_and_keeps_data(tmp_path: Path, ovsdb_tools: None) -> None:
    d = tmp_path / "state"
    old = EmbeddedServer(d, schema=old_schema(tmp_path)).start()
    try:
        vswitch = copy.deepcopy(VSWITCH)
        transact(old.remote, TENANT, NETWORK, vswitch)
        old.stop()
        srv = EmbeddedServer(d).start()
        try:
            assert srv.converted == ("0.9.0", ".".join(map(str, codec.schema_version())))
            assert (d / "tenantvisor.db.backup-0.9.0").exists()
            vs = select(srv.remote, "Vswitch")
            assert [(r["vdpid"], r["backup_num"], r["index"]) for r in vs] == [
                ("0005000000000001", 0, 1)
            ]  # kept, the new column at its default
            assert [r["name"] for r in select(srv.remote, "Tenant")] == ["a"]
            assert select(srv.remote, "Ownership") == []
        finally:
            srv.stop()
        again = EmbeddedServer(d).start()  # converted once only
        assert again.converted is None
        again.stop()
    finally:
        old.stop()


def test_refuses_newer_or_foreign_databases(tmp_path: Path, ovsdb_tools: None) -> None:
    d = tmp_path / "state"
    EmbeddedServer(d, schema=newer_schema(tmp_path)).start().stop()
    ours = ".".join(map(str, codec.schema_version())).replace(".", r"\.")
    with pytest.raises(ServerError, match=rf"newer than this tenantvisor's {ours}"):
        EmbeddedServer(d).start()
    other = tmp_path / "other"
    other.mkdir()
    subprocess.run(
        ["ovsdb-tool", "create", str(other / "tenantvisor.db"),
         "/usr/share/openvswitch/vswitch.ovsschema"],
        check=True,
    )  # fmt: skip
    with pytest.raises(ServerError, match="'Open_vSwitch', not 'Tenantvisor'"):
        EmbeddedServer(other).start()


@contextmanager
def _converted(tmp: Path, schema: Path, version: str, *rows: dict[str, Any]) -> Iterator[Store]:
    """A database of an older schema `version` holding `rows`, converted as the embedded
    server starts (checked): a Store on it, for the `with` block."""
    d = tmp / "state"
    old = EmbeddedServer(d, schema=schema).start()
    try:
        transact(old.remote, *rows)
        old.stop()
        srv = EmbeddedServer(d).start()
        try:
            assert srv.converted == (version, ".".join(map(str, codec.schema_version())))
            store = Store(srv.remote, timeout=5.0).start()
            try:
                yield store
            finally:
                store.stop()
        finally:
            srv.stop()
    finally:
        old.stop()


def test_a_1_1_database_converts_and_its_vports_load_as_plain_ones(
    tmp_path: Path, ovsdb_tools: None
) -> None:
    """A database written before exclusive vports (schema 1.1.0, no Vport.exclusive) is
    converted when the embedded server starts; its vports load as they were (not
    exclusive), and the mode is then kept like any other column."""
    vport = {"op": "insert", "table": "Vport", "row": {
        "network": 5, "vdpid": "0005000000000001", "number": 1,
        "dpid": "8000000000000001", "port": 3, "kind": "edge",
    }}  # fmt: skip
    with _converted(tmp_path, schema_1_1(tmp_path), "1.1.0", TENANT, NETWORK, VSWITCH,
                    vport) as store:  # fmt: skip
        net = store.load_network(5)
        assert net is not None
        (vp,) = net.switches[0x0005000000000001].ports.values()
        assert (vp.port, vp.kind, vp.exclusive) == (3, VPortKind.EDGE, False)
        vp.exclusive = True
        store.put_network(net)
        again = store.load_network(5)
        assert again is not None and again.switches[0x0005000000000001].ports[1].exclusive


def test_a_1_2_database_converts_and_its_networks_have_no_limits_override(
    tmp_path: Path, ovsdb_tools: None
) -> None:
    """A database written before data-plane limits (schema 1.2.0, no
    Virtual_Network.limits) is converted when the embedded server starts; its networks
    load with no override (the admin's defaults apply), and an override is then kept."""
    with _converted(tmp_path, schema_1_2(tmp_path), "1.2.0", TENANT, NETWORK, VSWITCH) as store:
        net = store.load_network(5)
        assert net is not None and net.limits == NO_LIMITS
        net.limits = Limits(vport_pps=500, vlink_kbps=0)
        store.put_network(net)
        again = store.load_network(5)
        assert again is not None and again.limits == Limits(vport_pps=500, vlink_kbps=0)


def test_a_1_3_database_converts_and_its_tenants_have_the_default_limits(
    tmp_path: Path, ovsdb_tools: None
) -> None:
    """A database written before tenant limits (schema 1.3.0, no Tenant.limits) is
    converted when the embedded server starts; its tenants load with no limits of their
    own (the daemon's defaults), and an admin's values are then kept like any column,
    changed in place (a tenant's name and token never change, its limits may)."""
    with _converted(tmp_path, schema_1_3(tmp_path), "1.3.0", TENANT) as store:
        (t,) = store.load_tenants()
        assert (t.id, t.name, t.limits) == (1, "a", {})
        t.limits = {"vswitches": 3, "msg_rate": 100}
        store.write_intent(IntentChange(tenants=[t]))
        t.limits = {"vswitches": 5}
        store.write_intent(IntentChange(tenants=[t]))
        (again,) = store.load_tenants()
        assert again.limits == {"vswitches": 5}


def test_convert_online(tmp_path: Path, ovsdb_tools: None) -> None:
    srv = EmbeddedServer(tmp_path / "state", schema=old_schema(tmp_path)).start()
    try:
        transact(srv.remote, TENANT, NETWORK, VSWITCH)
        assert convert_online(srv.remote) is True
        assert select(srv.remote, "Vswitch")[0]["backup_num"] == 0
        assert convert_online(srv.remote) is False
        with pytest.raises(ServerError, match="newer"):
            convert_online(srv.remote, old_schema(tmp_path, "0.8.0"))
    finally:
        srv.stop()


def test_a_three_member_cluster(tmp_path: Path, ovsdb_tools: None) -> None:
    cluster = Cluster(tmp_path / "cluster", 3)
    try:
        cluster.start()
        assert len(cluster.remote.split(",")) == 3
        assert all(m.remote.startswith("tcp:127.0.0.1:") for m in cluster.members)
        assert len({m.db_path for m in cluster.members}) == 3
        assert cluster.leader() is not None
        a, c = cluster.members[0], cluster.members[2]
        transact(a.remote, TENANT)  # through one member (forwarded to the leader)...
        deadline = time.monotonic() + 10
        while not select(c.remote, "Tenant"):  # ... read through another
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert select(c.remote, "Tenant")[0]["token_hash"] == HASH
        cluster.stop()
        # a restart keeps the members, their ports and the data
        again = Cluster(tmp_path / "cluster", 3).start()
        assert again.remote == cluster.remote
        assert select(again.members[1].remote, "Tenant")[0]["name"] == "a"
    finally:
        cluster.stop()

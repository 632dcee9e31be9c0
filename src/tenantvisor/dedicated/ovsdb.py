"""The OVSDB binding: one ``ovsdbapp`` connection per node, one transaction per step.

Why our own command instead of chaining ovsdbapp's ``add_br``/``add_port``/``db_set``: those
look rows up by name, and a row inserted earlier in the *same* transaction is not reliably
found that way, so "bridge + its ports + a tag" would need several transactions.  One
:class:`_ApplyChange` command edits the IDL rows directly and keeps the rows it inserts, so a
whole step (bridges, patch pair, endpoint, tunnels, VM port) is a single atomic transaction.
It is idempotent ("ensure"): adding what exists or deleting what is gone is a no-op, which
is what makes rollback (applying the inverse change) safe after a partial failure.

After the commit ovsdbapp waits until ``ovs-vswitchd`` has applied the configuration
(``next_cfg``); we then *verify* that every interface we added got an OpenFlow port and no
error.  A port that did not come up (a VM tap that does not exist, a name the kernel
refuses) fails the step: the caller rolls it back and answers 4xx.

ovsdbapp keeps its connection in a class attribute (``Backend._ovsdb_connection``), so each
node gets its own subclass; otherwise every node would silently share the first connection.
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
import warnings
from typing import Any

with warnings.catch_warnings():  # python-ovs imports eventlet, if present, and it complains
    warnings.simplefilter("ignore")
    from ovs import poller as _poller  # noqa: F401
from ovsdbapp.backend.ovs_idl import command as ovs_command
from ovsdbapp.backend.ovs_idl import connection, idlutils
from ovsdbapp.schema.open_vswitch import impl_idl

from tenantvisor.dedicated.planner import OF_PROTOCOLS, BridgeSpec, OvsdbChange, PortSpec
from tenantvisor.errors import Conflict, TenantvisorError

log = logging.getLogger(__name__)
OWNER_KEY = "tenantvisor"


class NodeUnreachable(TenantvisorError):
    """The node's OVSDB server does not answer: nothing was changed on it."""

    http_status = 424  # Failed Dependency: the request was fine, a node it needs is not


class OvsdbStepFailed(Conflict):
    """A transaction was refused or a port did not come up (message says which): the
    request conflicts with what the node has (a missing tap, a duplicate tunnel)."""


class _ApplyChange(ovs_command.BaseCommand):
    """Apply one :class:`OvsdbChange` inside the current IDL transaction."""

    def __init__(self, api: Any, change: OvsdbChange) -> None:
        super().__init__(api)
        self.change = change
        self.added_ifaces: list[str] = []

    def _bridge(self, name: str, made: dict[str, Any]) -> Any:
        if name in made:
            return made[name]
        return idlutils.row_by_value(self.api.idl, "Bridge", "name", name, None)

    def run_idl(self, txn: Any) -> None:
        ch = self.change
        tables = self.api._tables
        ovs = self.api._ovs
        for name in ch.del_bridges:
            br = idlutils.row_by_value(self.api.idl, "Bridge", "name", name, None)
            if br is None:
                continue
            for port in br.ports:
                for iface in port.interfaces:
                    iface.delete()
                port.delete()
            ovs.delvalue("bridges", br)
            br.delete()
        for brname, pname in ch.del_ports:
            br = idlutils.row_by_value(self.api.idl, "Bridge", "name", brname, None)
            if br is None:
                continue
            for port in list(br.ports):
                if port.name == pname:
                    br.delvalue("ports", port)
                    for iface in port.interfaces:
                        iface.delete()
                    port.delete()
        made: dict[str, Any] = {}
        for b in ch.add_bridges:
            br = self._bridge(b.name, made)
            if br is None:
                br = txn.insert(tables["Bridge"])
                br.name = b.name
                br.datapath_type = "netdev"
                br.fail_mode = "secure"
                br.protocols = OF_PROTOCOLS.split(",")
                self._insert_port(txn, br, PortSpec(b.name, "internal"))
                ovs.addvalue("bridges", br)
                have = {b.name}
            else:
                have = {p.name for p in br.ports}
            made[b.name] = br
            self._set_bridge(txn, br, b)
            for port in b.ports:
                if port.name not in have:
                    self._insert_port(txn, br, port)
        for b in ch.set_bridges:
            br = self._bridge(b.name, made)
            if br is not None:
                self._set_bridge(txn, br, b)
        for brname, port in ch.add_ports:
            br = self._bridge(brname, made)
            if br is None:
                raise OvsdbStepFailed(f"bridge {brname} does not exist")
            if any(p.name == port.name for p in br.ports):
                continue
            self._insert_port(txn, br, port)

    def _set_bridge(self, txn: Any, br: Any, b: BridgeSpec) -> None:
        ids = {OWNER_KEY: "provider"}
        if b.network is not None:
            ids["tv-network"] = b.network
        br.external_ids = ids
        if b.hwaddr:
            br.other_config = {"hwaddr": b.hwaddr, "disable-in-band": "true"}
        else:
            br.other_config = {"disable-in-band": "true"}
        try:
            old = list(br.controller)
        except AttributeError:  # a row inserted in this transaction has no data yet
            old = []
        for c in old:
            c.delete()
        if b.controller:
            c = txn.insert(self.api._tables["Controller"])
            c.target = b.controller
            c.connection_mode = "out-of-band"
            c.max_backoff = 1000
            br.controller = [c]
        else:
            br.controller = []

    def _insert_port(self, txn: Any, br: Any, spec: PortSpec) -> None:
        port = txn.insert(self.api._tables["Port"])
        port.name = spec.name
        if spec.tag is not None:
            port.tag = spec.tag
        port.external_ids = {OWNER_KEY: spec.owner}
        iface = txn.insert(self.api._tables["Interface"])
        iface.name = spec.name
        if spec.type:
            iface.type = spec.type
        if spec.options:
            iface.options = dict(spec.options)
        if spec.mac:
            iface.mac = spec.mac
        port.interfaces = [iface]
        br.addvalue("ports", port)
        txn.expected_ifaces.add(iface.uuid)
        if spec.name != br.name:
            self.added_ifaces.append(spec.name)


def _probe(endpoint: str, timeout: float) -> None:
    """Connect once with a timeout: the IDL's own connect blocks without one."""
    if endpoint.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX)
        addr: Any = endpoint[5:]
    else:
        host, _, port = endpoint[4:].rpartition(":")
        sock = socket.socket(socket.AF_INET)
        addr = (host, int(port))
    sock.settimeout(timeout)
    try:
        sock.connect(addr)
    finally:
        sock.close()


def _api_class() -> type[impl_idl.OvsdbIdl]:
    """A fresh subclass, so this node's connection is not the one every instance shares."""
    name = f"NodeOvsdbIdl_{uuid.uuid4().hex[:8]}"
    cls: type[impl_idl.OvsdbIdl] = type(name, (impl_idl.OvsdbIdl,), {"_ovsdb_connection": None})
    return cls


class NodeOvsdb:
    """One node's OVSDB: connect, apply a change as one transaction, verify, read back."""

    def __init__(self, node: str, endpoint: str, timeout: float = 5.0) -> None:
        self.node = node
        self.endpoint = endpoint
        self.timeout = timeout
        self._api: Any = None
        self._conn: connection.Connection | None = None
        self._lock = threading.Lock()

    def connect(self) -> NodeOvsdb:
        """Fetch the schema and start the IDL; :class:`NodeUnreachable` if it does not answer."""
        try:
            _probe(self.endpoint, self.timeout)
            helper = idlutils.get_schema_helper(self.endpoint, "Open_vSwitch")
            helper.register_all()
            idl = connection.OvsdbIdl(self.endpoint, helper)
            self._conn = connection.Connection(idl, timeout=self.timeout)
            self._api = _api_class()(self._conn)
        except Exception as exc:
            self.close()
            raise NodeUnreachable(
                f"node {self.node}: OVSDB at {self.endpoint} does not answer ({exc})"
            ) from None
        return self

    @property
    def started(self) -> bool:
        """``connect`` succeeded once (the IDL then reconnects by itself)."""
        return self._api is not None

    @property
    def connected(self) -> bool:
        return self._api is not None and bool(self._api.idl._session.is_connected())

    @property
    def ready(self) -> bool:
        """Connected and the replica is current (the monitor reply after a reconnect is in)."""
        if not self.connected:
            return False
        idl = self._api.idl
        return getattr(idl, "state", None) in (None, getattr(idl, "IDL_S_MONITORING", None))

    @property
    def session(self) -> int | None:
        """Changes whenever the connection to the node drops or comes back (None: never
        connected): what was reconciled on one session may be stale on the next."""
        if self._api is None:
            return None
        return int(self._api.idl._session.get_seqno())

    def close(self) -> None:
        if self._conn is not None:
            self._conn.stop(timeout=2)
        self._conn = None
        self._api = None

    def _require(self) -> Any:
        if not self.connected:
            raise NodeUnreachable(f"node {self.node}: OVSDB at {self.endpoint} is not connected")
        return self._api

    def apply(self, change: OvsdbChange, *, verify: bool = True) -> list[str]:
        """Commit ``change`` as one transaction, then check every added interface came up
        (``verify=False``: return what did not come up instead of raising)."""
        if not change:
            return []
        api = self._require()
        with self._lock:
            cmd = _ApplyChange(api, change)
            try:
                with api.transaction(check_error=True, log_errors=False, timeout=self.timeout) as t:
                    t.add(cmd)
            except TenantvisorError:
                raise
            except Exception as exc:
                raise OvsdbStepFailed(
                    f"node {self.node}: OVSDB refused the change: {exc}"
                ) from None
            bad = self._failed_interfaces(cmd.added_ifaces)
        if bad and verify:
            raise OvsdbStepFailed(f"node {self.node}: " + "; ".join(bad))
        return bad

    def _failed_interfaces(self, names: list[str]) -> list[str]:
        rows = self._api.tables["Interface"].rows.values()
        by_name = {r.name: r for r in rows}
        bad = []
        for name in names:
            r = by_name.get(name)
            ofport = (r.ofport[0] if r.ofport else None) if r is not None else None
            if r is None or ofport is None or ofport < 1:
                err = r.error[0] if r is not None and r.error else "no OpenFlow port"
                bad.append(f"interface {name} did not come up: {err}")
        return bad

    def snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{bridge: {port: {type, options, tag, owner}}}`` as the node holds them now."""
        api = self._require()
        out: dict[str, dict[str, dict[str, Any]]] = {}
        with self._lock:
            for br in list(api.tables["Bridge"].rows.values()):
                ports: dict[str, dict[str, Any]] = {}
                for port in br.ports:
                    iface = port.interfaces[0] if port.interfaces else None
                    ports[port.name] = {
                        "type": iface.type if iface is not None else "",
                        "options": dict(iface.options) if iface is not None else {},
                        "tag": port.tag[0] if port.tag else None,
                        "owner": dict(port.external_ids).get(OWNER_KEY),
                    }
                out[br.name] = ports
        return out

    def observe(self) -> tuple[dict[str, BridgeSpec], set[str]]:
        """What the node holds, as the planner's records: the bridges tenantvisor made
        (``external_ids:tenantvisor=provider``) with the ports it or a tenant added through it
        (a port's ``tenantvisor`` key), and the names of every bridge (ours or not)."""
        api = self._require()
        ours: dict[str, BridgeSpec] = {}
        names: set[str] = set()
        with self._lock:
            for br in list(api.tables["Bridge"].rows.values()):
                names.add(br.name)
                ids = dict(br.external_ids)
                if ids.get(OWNER_KEY) != "provider":
                    continue
                ports = []
                for port in br.ports:
                    owner = dict(port.external_ids).get(OWNER_KEY)
                    if port.name == br.name or owner not in ("provider", "tenant"):
                        continue
                    iface = port.interfaces[0] if port.interfaces else None
                    ports.append(
                        PortSpec(
                            port.name,
                            iface.type if iface is not None else "",
                            tuple(sorted(dict(iface.options).items())) if iface is not None else (),
                            (iface.mac[0] if iface is not None and iface.mac else None),
                            port.tag[0] if port.tag else None,
                            owner,
                        )
                    )
                # several controllers are never ours: joined, they differ and get rewritten
                targets = ",".join(sorted(c.target for c in br.controller))
                ours[br.name] = BridgeSpec(
                    br.name,
                    tuple(sorted(ports, key=lambda p: p.name)),
                    network=ids.get("tv-network"),
                    controller=targets or None,
                    hwaddr=dict(br.other_config).get("hwaddr"),
                )
        return ours, names

    def controller_status(self, bridge: str) -> list[tuple[str, bool]]:
        """(target, is_connected) of the bridge's controllers."""
        api = self._require()
        br = idlutils.row_by_value(api.idl, "Bridge", "name", bridge, None)
        if br is None:
            return []
        return [(c.target, bool(c.is_connected)) for c in br.controller]


__all__ = ["NodeOvsdb", "NodeUnreachable", "OvsdbStepFailed"]

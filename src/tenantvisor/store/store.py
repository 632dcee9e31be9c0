"""The intent store: a client of our own OVSDB schema, over the `ovs` IDL, as OVN's daemons
are clients of theirs.

`Store(remote)` keeps an in-memory replica of the whole database (the IDL's), driven by one
thread (ovsdbapp's `Connection`), and writes with one OVSDB transaction per call:

* every public write is **one transaction**, all of it or nothing.  Transactions are built
  from raw OVSDB operations on the replica's rows (cheap: no per-column IDL bookkeeping),
  keyed by each table's identifying columns (`codec.KEYS`), and are idempotent "make it so"
  writes, so a transaction retried after a reconnect cannot apply twice;
* uniqueness is the schema's: a second writer's duplicate key fails the whole transaction
  (`StoreConflict`, `AllocationConflict` for an allocation id);
* `put_network` replaces a network's whole subtree (rows no longer present are deleted) and
  guards it with the network row's `generation`: two writers replacing the same network
  cannot interleave (the second is rebuilt on the fresher replica and wins whole);
* tenant rules, groups and meters can only be written for a vswitch that exists at commit
  (a `wait` operation on its row);
* tenant rules (`Tenant_Flow`, the one table that grows with traffic) are not replicated:
  they are written constantly and read only at start or on a takeover, and a replica of
  them would cost memory and CPU per row for nothing.  Each rule row has a deterministic
  UUID (uuid5 of its key, inserted with OVSDB's ``uuid`` member, ovsdb-server >= 3.1), the
  store remembers which serials each vswitch has stored (read with one `select` when it
  does not know), and rules are read with `select`.  Other writers' rule changes are
  therefore not reported by `on_change`: only a network's owner writes its rules.

`load_network` (and `load_tenants`, `load_counters`, `allocations`, `instances`,
`ownership`) read the replica under the connection's lock; `load` and `load_state` run
on the store's thread (they `select` the rules), so they see one consistent moment.

`on_change` reports what transactions of *other* clients changed: our own transactions'
updates arrive (ovsdb-server flushes monitors before it replies) while the transaction is
in flight, and are recognised by the keys and networks it touched.

Several instances share one database: each heartbeats its `Instance` row, each virtual
network is owned by one of them (`Ownership`, a weak reference: removing an instance leaves
its networks unowned), and `claim` takes a network only if its owner is still the one the
claimer saw, checked by the server (`wait` operations).  Ids that reach the wire are taken
with `reserve_allocations` first: the schema's (space, id) index lets one owner win.

Calls block the calling thread until the server has answered (about a millisecond on a
local unix socket for an API-sized change; tests/store/test_store.py::test_costs measures
it); callbacks run on the store's own thread and may only read the replica (the readers
above).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid as uuidlib
import warnings
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, Protocol

with warnings.catch_warnings():  # python-ovs imports eventlet, if present, and it complains
    warnings.simplefilter("ignore")
    import ovs.poller
from ovs.db import idl as ovs_idl
from ovsdbapp import exceptions as ovsdbapp_exceptions
from ovsdbapp.backend.ovs_idl import connection, idlutils

from tenantvisor.dedicated.model import Intent, Network, Node, TenantPort, VmBinding
from tenantvisor.store import codec, fastjson
from tenantvisor.store.codec import Key, Row
from tenantvisor.store.errors import (
    AllocationConflict,
    StoreConflict,
    StoreError,
    StoreUnavailable,
)
from tenantvisor.store.records import (
    Allocation,
    ChangeSet,
    FlowKey,
    FlowRecord,
    GroupKey,
    GroupRecord,
    MeterKey,
    MeterRecord,
    Snapshot,
    VSwitchKey,
)
from tenantvisor.virtual.flowtable import VFlow
from tenantvisor.virtual.groups import VGroup, VMeter
from tenantvisor.virtual.model import Host, Tenant, VirtualNetwork

log = logging.getLogger(__name__)

_REMOTE_PREFIXES = ("unix:", "tcp:", "ssl:")


class IntentChangeLike(Protocol):
    """What one API call changed (virtual/manager.py's `IntentChange`)."""

    @property
    def tenants(self) -> Sequence[Tenant]: ...

    @property
    def deleted_tenants(self) -> Sequence[int]: ...

    @property
    def networks(self) -> Sequence[VirtualNetwork]: ...

    @property
    def deleted_networks(self) -> Sequence[int]: ...

    @property
    def hosts(self) -> Sequence[tuple[VirtualNetwork, Host]]: ...

    @property
    def counters(self) -> Mapping[str, int]: ...


class RuntimeChangeLike(Protocol):
    """A batch of runtime state (persistence.py's `RuntimeChange`)."""

    @property
    def allocations(self) -> Mapping[tuple[Any, Hashable], int | None]: ...

    @property
    def flows(self) -> Mapping[tuple[int, int], Mapping[int, VFlow | None]]: ...

    @property
    def groups(
        self,
    ) -> Mapping[tuple[int, int], tuple[Mapping[int, VGroup], Mapping[int, VMeter]]]: ...

    @property
    def dropped(self) -> AbstractSet[tuple[int, int]]: ...


def _where_uuid(u: uuidlib.UUID) -> list[Any]:
    return [["_uuid", "==", ["uuid", str(u)]]]


def _optional(v: Any) -> Any:
    if isinstance(v, list):
        return v[0] if v else None
    return v


_AGAIN = object()
"""A `_Batch.refusal`'s answer: build the transaction again (once the replica changed)."""

UNREPLICATED = ("Tenant_Flow",)
"""Tables the IDL does not replicate (see the module docstring)."""
_FLOW_NS = uuidlib.UUID("74760000-7476-5476-8476-747600000001")


def _check_instance_id(instance_id: str) -> None:
    if not isinstance(instance_id, str) or not 1 <= len(instance_id) <= 64:
        raise ValueError(f"instance id {instance_id!r}: expected a string of 1 to 64 characters")


def _check_network(network: int) -> None:
    if isinstance(network, bool) or not isinstance(network, int) or not 1 <= network <= 0xFFFF:
        raise ValueError(f"network id {network!r}: expected an integer from 1 to 65535")


def _instance_row(ownership: Any) -> Any:
    """The Instance IDL row an Ownership IDL row names, or None."""
    refs = ownership.instance
    return refs[0] if refs and refs[0] is not None else None


def _set_revision(net: VirtualNetwork, generation: int) -> Callable[[list[Any]], bool]:
    """A hook for after the commit: the writer's copy is now at `generation`."""

    def hook(_: list[Any]) -> bool:
        net.revision = generation
        return False

    return hook


def flow_uuid(net_id: int, vdpid: str, serial: int) -> uuidlib.UUID:
    """The UUID of the Tenant_Flow row (network, vdpid, serial): the same for every writer."""
    return uuidlib.uuid5(_FLOW_NS, f"{net_id}/{vdpid}/{serial}")


# --- the replica's rows by key and by network ---------------------------------------------
class _Index:
    """The replica's rows by identifying key and by network, kept up to date from the IDL's
    notices (and rebuilt whole after every (re)synchronisation)."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.by_key: dict[str, dict[Key, uuidlib.UUID]] = {t: {} for t in codec.KEYS}
        self.meta: dict[str, dict[uuidlib.UUID, tuple[Key, Any, Any]]] = {t: {} for t in codec.KEYS}
        self.by_net: dict[str, dict[Any, set[Key]]] = {t: {} for t in codec.NET_COLUMN}
        self.alloc_ids: dict[tuple[str, int], Key] = {}  # Allocation (space, id) -> key
        # rows decoded once (reading an IDL row costs a conversion per column and access),
        # dropped at the row's next notice
        self.rows: dict[uuidlib.UUID, Row] = {}

    def add(self, table: str, row: Any) -> tuple[Key, Any]:
        k = tuple(getattr(row, c) for c in codec.KEYS[table])
        col = codec.NET_COLUMN.get(table)
        net = _optional(getattr(row, col)) if col else None
        extra = row.id if table == "Allocation" else None
        self.rows.pop(row.uuid, None)
        old = self.meta[table].get(row.uuid)
        if old is not None:
            self._drop(table, row.uuid, old)
        self.by_key[table][k] = row.uuid
        self.meta[table][row.uuid] = (k, net, extra)
        if col is not None and net is not None:
            self.by_net[table].setdefault(net, set()).add(k)
        if extra is not None:
            self.alloc_ids[(k[0], extra)] = k
        return k, net

    def remove(self, table: str, u: uuidlib.UUID) -> tuple[Key, Any] | None:
        self.rows.pop(u, None)
        m = self.meta[table].pop(u, None)
        if m is None:
            return None
        self._drop(table, u, m)
        return m[0], m[1]

    def _drop(self, table: str, u: uuidlib.UUID, m: tuple[Key, Any, Any]) -> None:
        k, net, extra = m
        if self.by_key[table].get(k) == u:
            del self.by_key[table][k]
        if net is not None and table in self.by_net:
            keys = self.by_net[table].get(net)
            if keys is not None:
                keys.discard(k)
                if not keys:
                    del self.by_net[table][net]
        if extra is not None and self.alloc_ids.get((k[0], extra)) == k:
            del self.alloc_ids[(k[0], extra)]

    def keys_of(self, table: str, net: Any) -> set[Key]:
        return set(self.by_net[table].get(net, ()))

    def decoded(self, table: str, row: Any) -> Row:
        """`row`'s values as a codec row (cached; callers must not change it)."""
        got = self.rows.get(row.uuid)
        if got is None:
            cols = codec.column_kinds()[table]
            got = self.rows[row.uuid] = codec.from_idl(table, {c: getattr(row, c) for c in cols})
        return got


@dataclass
class _Expect:
    """What our transaction in flight changes: its updates are not another writer's."""

    keys: set[tuple[str, Key]] = field(default_factory=set)
    nets: set[tuple[str, Any]] = field(default_factory=set)

    def covers(self, table: str, k: Key, net: Any) -> bool:
        return (table, k) in self.keys or (net is not None and (table, net) in self.nets)


class _Pending:
    """Notices from other writers since the last callback."""

    def __init__(self, resync: bool = False) -> None:
        self.tables: set[str] = set()
        self.networks: set[int] = set()
        self.tenants: set[int] = set()
        self.dnb: set[str] = set()
        self.resync = resync

    def add(self, table: str, k: Key, net: Any) -> None:
        self.tables.add(table)
        if table == "Tenant":
            self.tenants.add(k[0])
        elif net is not None and table in codec.DNB_TABLES:
            self.dnb.add(net)
        elif net is not None:
            self.networks.add(net)

    def freeze(self) -> ChangeSet:
        return ChangeSet(
            frozenset(self.tables),
            frozenset(self.networks),
            frozenset(self.tenants),
            frozenset(self.dnb),
            self.resync,
        )

    def __bool__(self) -> bool:
        return bool(self.tables) or self.resync


class _Idl(ovs_idl.Idl):
    """The `ovs` IDL, reporting its notices and (re)synchronisations to the store."""

    def __init__(self, store: Store, remote: str, helper: Any, leader_only: bool) -> None:
        super().__init__(remote, helper, leader_only=leader_only)
        self._store = store
        fastjson.install(self._session)

    def notify(self, event: str, row: Any, updates: Any = None) -> None:
        self._store._notice(event, row)

    def run(self) -> bool:
        changed: bool = super().run()
        self._store._after_run(self)
        return changed


class _Txn(ovs_idl.Transaction):
    """A transaction that keeps its reply: the results of raw operations (counts, selected
    rows) are otherwise dropped by the IDL."""

    reply: list[Any] | None = None

    def _process_reply(self, msg: Any) -> None:
        if isinstance(getattr(msg, "result", None), list):
            self.reply = msg.result
        super()._process_reply(msg)


# --- building one transaction -------------------------------------------------------------
def _check_revision(b: _Batch, nid: int, u: uuidlib.UUID, net: VirtualNetwork) -> None:
    """Refuse a change made on a copy of the network older than the store's (another
    writer replaced it since: StoreConflict, and the writer reads it again)."""
    stored = b.current("Virtual_Network", u)["generation"]
    if stored != net.revision:
        raise StoreConflict(
            f"network {nid} was changed by another writer meanwhile (generation "
            f"{stored}, this change was made on {net.revision})"
        )


def _next_generation(
    b: _Batch, nid: int, u: uuidlib.UUID, net: VirtualNetwork | None, mark: int, cols: Row
) -> None:
    """The network changed (its own columns `cols`, or rows written from op `mark` on):
    raise its generation, on condition that no other writer raised it meanwhile (that
    fails the transaction, which is rebuilt on the fresher replica and refused)."""
    gen = b.current("Virtual_Network", u)["generation"]
    b.wait_equal("Virtual_Network", u, {"generation": gen}, at=mark)
    b.update("Virtual_Network", u, (nid,), {**cols, "generation": gen + 1})
    if net is not None:
        b.after.append(_set_revision(net, gen + 1))


class _Batch:
    """The operations of one transaction, built on the replica (IDL thread, under lock)."""

    def __init__(self, store: Store, job: _Job) -> None:
        self.store = store
        self.job = job
        self.idl: Any = store._idl
        self.ix = store._index
        self.ops: list[dict[str, Any]] = []
        self.expect = _Expect()
        # run with the reply once committed; True: the write must be done again
        self.after: list[Callable[[list[Any]], bool]] = []
        # run when the server refused the transaction; True: build it again
        self.on_error: list[Callable[[str], bool]] = []
        # given what `_refused` made of a refusal: the call's result instead of raising it
        # (it may raise), or `_AGAIN` to build again once the replica has changed
        self.refusal: Callable[[StoreError], Any] | None = None

    # reading the replica
    def uuid(self, table: str, k: Key) -> uuidlib.UUID | None:
        u = self.ix.by_key[table].get(k)
        if u is None or u not in self.idl.tables[table].rows:
            return None
        return u

    def idl_row(self, table: str, u: uuidlib.UUID) -> Any:
        return self.idl.tables[table].rows[u]

    def current(self, table: str, u: uuidlib.UUID) -> Row:
        return self.ix.decoded(table, self.idl_row(table, u))

    # writing
    def insert(self, table: str, row: Row) -> None:
        self.ops.append({"op": "insert", "table": table, "row": codec.to_json(table, row)})
        self.expect.keys.add((table, codec.key(table, row)))

    def update(self, table: str, u: uuidlib.UUID, k: Key, cols: Row) -> None:
        self.ops.append(
            {
                "op": "update",
                "table": table,
                "where": _where_uuid(u),
                "row": codec.to_json(table, cols),
            }
        )
        self.expect.keys.add((table, k))

    def delete(self, table: str, k: Key) -> bool:
        u = self.uuid(table, k)
        if u is None:
            return False
        self.ops.append({"op": "delete", "table": table, "where": _where_uuid(u)})
        self.expect.keys.add((table, k))
        return True

    def delete_where(self, table: str, net: Any, where: list[Any]) -> None:
        """Delete every row of `table` matching `where` on the server (not only those the
        replica knows); every notice of `net`'s rows in `table` is then ours."""
        self.ops.append({"op": "delete", "table": table, "where": where})
        self.expect.nets.add((table, net))

    def wait_exists(self, table: str, u: uuidlib.UUID) -> None:
        """Fail the transaction (try again) unless the row still exists at commit."""
        self.ops.append(
            {
                "op": "wait",
                "table": table,
                "timeout": 0,
                "where": _where_uuid(u),
                "columns": [],
                "until": "==",
                "rows": [{}],
            }
        )

    def wait_equal(self, table: str, u: uuidlib.UUID, cols: Row, at: int | None = None) -> None:
        """Fail the transaction (try again) unless the row still has these values."""
        op = {
            "op": "wait",
            "table": table,
            "timeout": 0,
            "where": _where_uuid(u),
            "columns": sorted(cols),
            "until": "==",
            "rows": [codec.to_json(table, cols)],
        }
        self.ops.insert(len(self.ops) if at is None else at, op)

    def put(self, table: str, row: Row, compare: bool = True) -> bool:
        """Insert `row`, or update the row with its key to it; True if anything is written.
        `compare=False` writes every column of an existing row without reading it first
        (cheaper for rows that rarely repeat, like rules)."""
        k = codec.key(table, row)
        u = self.uuid(table, k)
        if u is None:
            self.insert(table, row)
            return True
        keycols = codec.KEYS[table]
        if compare:
            cur = self.current(table, u)
            cols = {c: v for c, v in row.items() if c not in keycols and cur.get(c) != v}
        else:
            cols = {c: v for c, v in row.items() if c not in keycols}
        if not cols:
            return False
        self.update(table, u, k, cols)
        return True

    def sync(self, table: str, wanted: Mapping[Key, Row], existing: Iterable[Key]) -> None:
        """Make `table`'s rows among `existing` exactly `wanted`."""
        for k in set(existing) - set(wanted):
            self.delete(table, k)
        for row in wanted.values():
            self.put(table, row)


class _Job:
    """One write, run by the connection's thread: build on the replica, commit, retry on
    TRY_AGAIN (a failed `wait`, a reconnect) until the deadline."""

    def __init__(self, store: Store, build: Callable[[_Batch], Any], what: str) -> None:
        self.store = store
        self.build = build
        self.what = what
        self.deadline = time.monotonic() + store.timeout
        self.results: queue.Queue[Any] = queue.Queue(1)
        self.cancelled = False
        self.attempts = 0

    def _unavailable(self, why: str) -> StoreUnavailable:
        return StoreUnavailable(f"{self.what}: store at {self.store.remote}: {why}")

    def do_commit(self) -> Any:
        store, idl = self.store, self.store._idl
        while True:
            if self.cancelled:
                return None
            if time.monotonic() > self.deadline:
                why = "connected, but" if store.connected else "not connected, and"
                raise self._unavailable(
                    f"{why} no transaction went through within {store.timeout:g} s"
                )
            self.attempts += 1
            seqno = idl.change_seqno
            batch = _Batch(store, self)
            result = self.build(batch)
            if not batch.ops:
                return result
            txn = self.transaction(batch.ops)
            store._expect = batch.expect
            try:
                status = self._commit(txn)
            except StoreUnavailable:
                store._flows.clear()  # what the server holds now is unknown
                raise
            finally:
                store._expect = None
            if status in (txn.SUCCESS, txn.UNCHANGED):
                reply = txn.reply or []
                again = [hook(reply) for hook in batch.after]
                if any(again) and self.attempts < 5:
                    continue
                return result
            if status == txn.TRY_AGAIN:
                self._wait_change(seqno)
                continue
            if status == txn.ERROR:
                error = txn.get_error()
                again = [hook(error) for hook in batch.on_error]
                if any(again) and self.attempts < 3:
                    continue
                refused = store._refused(self.what, error)
                if batch.refusal is None:
                    raise refused
                result = batch.refusal(refused)
                if result is _AGAIN:
                    self._wait_change(seqno)
                    continue
                return result
            raise StoreError(f"{self.what}: transaction ended {status}")

    def transaction(self, ops: list[dict[str, Any]]) -> _Txn:
        txn = _Txn(self.store._idl)
        for op in ops:
            txn.add_op(op)
        return txn

    def select(self, table: str, where: list[Any], columns: list[str] | None = None) -> list[Any]:
        """Rows of `table` matching `where`, as OVSDB JSON, read now with a `select` (for
        tables the IDL does not replicate).  Runs on the store's thread, between commits."""
        return self.select_each(table, [where], columns)[0]

    def select_each(
        self, table: str, wheres: list[list[Any]], columns: list[str] | None = None
    ) -> list[list[Any]]:
        """`select` for each of `wheres`, in one transaction (one moment of the server)."""
        if not wheres:
            return []
        ops: list[dict[str, Any]] = []
        for where in wheres:
            op: dict[str, Any] = {"op": "select", "table": table, "where": where}
            if columns is not None:
                op["columns"] = columns
            ops.append(op)
        while True:
            seqno = self.store._idl.change_seqno
            txn = self.transaction(ops)
            status = self._commit(txn)
            if status == txn.SUCCESS and txn.reply:
                return [r.get("rows", []) for r in txn.reply[: len(ops)]]
            if status == txn.TRY_AGAIN and time.monotonic() < self.deadline:
                self._wait_change(seqno)
                continue
            if status == txn.TRY_AGAIN:
                raise self._unavailable(f"could not read {table} within {self.store.timeout:g} s")
            raise StoreError(f"{self.what}: reading {table} failed: {txn.get_error()}")

    def _block(self, *waiters: Any) -> None:
        remaining = self.deadline - time.monotonic()
        poller = ovs.poller.Poller()
        for w in waiters:
            w.wait(poller)
        poller.timer_wait(max(1, int(remaining * 1000) + 1))
        poller.block()

    def _commit(self, txn: Any) -> str:
        idl = self.store._idl
        while True:
            status: str = txn.commit()
            if status != txn.INCOMPLETE:
                return status
            if time.monotonic() > self.deadline:
                txn.abort()
                raise self._unavailable(
                    f"no reply within {self.store.timeout:g} s: the transaction may or may not "
                    "have been applied (all of it or none)"
                )
            self._block(idl, txn)
            idl.run()

    def _wait_change(self, seqno: int) -> None:
        idl = self.store._idl
        while idl.change_seqno == seqno:
            idl.run()
            if idl.change_seqno != seqno:
                return
            if time.monotonic() > self.deadline:
                return  # do_commit reports it
            self._block(idl)


# --- the store ----------------------------------------------------------------------------
class Store:
    """A client of the intent database at `remote`: ``unix:PATH``, ``tcp:IP:PORT``, or
    several comma-separated (a cluster).  `timeout` bounds `start` and every call.

    `leader_only` (the default, like ``ovn-nbctl``): with a cluster, talk to the leader
    only, so reads are never stale; False lets the IDL use any member connected to the
    cluster (writes are forwarded to the leader).
    """

    def __init__(self, remote: str, timeout: float = 5.0, *, leader_only: bool = True) -> None:
        parts = remote.split(",") if isinstance(remote, str) else []
        if not parts or not all(p.startswith(_REMOTE_PREFIXES) for p in parts):
            raise ValueError(
                f"store remote {remote!r}: expected unix:PATH, tcp:IP:PORT or a comma-separated "
                "list of them"
            )
        self.remote = remote
        self.timeout = timeout
        self.leader_only = leader_only
        self._idl: Any = None
        self._conn: Any = None
        self._index = _Index()
        self._expect: _Expect | None = None
        self._pending = _Pending()
        self._callbacks: list[Callable[[ChangeSet], None]] = []
        self._synced: int | None = None  # the session seqno the replica was last synced on
        self._server_version: str | None = None
        # the rule serials stored per (network, vdpid), where known (store's thread only)
        self._flows: dict[tuple[int, str], set[int]] = {}

    # --- connection -------------------------------------------------------------------------
    def start(self) -> Store:
        """Connect and wait for the whole database; StoreUnavailable if no server sent it
        within the timeout, StoreError if the server holds no or an incompatible database."""
        if self._conn is not None:
            return self
        helper = ovs_idl.SchemaHelper(location=str(codec.SCHEMA_PATH))
        for table in codec.schema()["tables"]:
            if table not in UNREPLICATED:
                helper.register_table(table)
        idl = _Idl(self, self.remote, helper, self.leader_only)
        self._idl = idl
        deadline = time.monotonic() + self.timeout
        try:
            while True:
                idl.run()
                self._check_server(idl)
                if self._synced is not None:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StoreUnavailable(
                        f"store at {self.remote}: no OVSDB server sent database {codec.DB_NAME} "
                        f"within {self.timeout:g} s"
                        + ("" if idl._session.is_connected() else " (not connected)")
                    )
                poller = ovs.poller.Poller()
                idl.wait(poller)
                poller.timer_wait(max(1, int(min(remaining, 0.1) * 1000)))
                poller.block()
            conn = connection.Connection(idl, self.timeout)
            conn.start()
        except BaseException:
            idl.close()
            self._idl = None
            raise
        self._conn = conn
        log.info(
            "store: connected to %s (schema %s, %d rows)",
            self.remote,
            self._server_version,
            sum(len(t.rows) for t in idl.tables.values()),
        )
        return self

    def _check_server(self, idl: Any) -> None:
        """Refuse a server without our database, or with an incompatible schema version
        (an older one, or another major version), as soon as its _Server row says so."""
        tables = getattr(idl, "server_tables", None)
        dbs = tables.get("Database") if tables else None
        rows = list(getattr(dbs, "rows", {}).values()) if dbs is not None else []
        if not rows:
            return
        mine = [r for r in rows if r.name == codec.DB_NAME]
        if not mine:
            raise StoreError(
                f"store at {self.remote}: the server has no database {codec.DB_NAME} "
                f"(it has {', '.join(sorted(r.name for r in rows))})"
            )
        text = _optional(mine[0].schema)
        if not text:
            return  # a cluster member that has not joined yet: the IDL tries another
        version = json.loads(text).get("version", "0.0.0")
        self._server_version = version
        have, want = codec.schema_version(version), codec.schema_version()
        if have[0] != want[0] or have < want:
            raise StoreError(
                f"store at {self.remote}: the database has schema {version}, this tenantvisor "
                f"needs {'.'.join(map(str, want))}: upgrade the database (EmbeddedServer "
                "converts its file when it starts; a cluster: store.server.convert_online)"
            )

    def stop(self) -> None:
        """Disconnect (idempotent; `start` connects again)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.stop(timeout=self.timeout)
        elif self._idl is not None:
            self._idl.close()
        self._idl = None
        self._synced = None
        self._pending = _Pending()
        self._flows.clear()

    @property
    def started(self) -> bool:
        return self._conn is not None

    @property
    def connected(self) -> bool:
        idl = self._idl
        return (
            idl is not None
            and bool(idl._session.is_connected())
            and idl.state == idl.IDL_S_MONITORING
        )

    def __enter__(self) -> Store:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def on_change(self, callback: Callable[[ChangeSet], None]) -> Callable[[], None]:
        """Call `callback(ChangeSet)` after each batch of updates made by *other* clients
        (and with `resync=True` after a reconnect).  It runs on the store's thread: hand the
        work to your own (e.g. ``loop.call_soon_threadsafe``); from the callback itself only
        the replica's readers may be called (`load_network`, `instances`, `ownership`, ...;
        writes, `load` and `load_state` raise StoreError).
        Returns a function that removes the callback."""
        self._callbacks.append(callback)

        def remove() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return remove

    # --- IDL thread: notices ----------------------------------------------------------------
    def _notice(self, event: str, row: Any) -> None:
        idl = self._idl
        if idl is not None and idl.state != idl.IDL_S_MONITORING:
            return  # the (re)synchronisation's dump: `_rebuild` indexes it whole
        table = row._table.name
        if table not in codec.KEYS:
            return
        if event == ovs_idl.ROW_DELETE:
            got = self._index.remove(table, row.uuid)
        else:
            got = self._index.add(table, row)
        if got is None:
            return
        k, net = got
        exp = self._expect
        if exp is not None and exp.covers(table, k, net):
            return
        self._pending.add(table, k, net)

    def _after_run(self, idl: Any) -> None:
        seqno = idl._session.get_seqno()
        if (
            idl.state == idl.IDL_S_MONITORING
            and idl._session.is_connected()
            and seqno != self._synced
        ):
            first = self._synced is None
            self._synced = seqno
            self._rebuild(idl)
            self._pending = _Pending(resync=not first)
            if not first:
                log.warning("store: reconnected to %s, replica reloaded", idl.session_name())
        if not self._pending:
            return
        pending, self._pending = self._pending, _Pending()
        if not self._callbacks:
            return
        changes = pending.freeze()
        for cb in list(self._callbacks):
            try:
                cb(changes)
            except Exception:
                log.exception("store: on_change callback failed")

    def _rebuild(self, idl: Any) -> None:
        ix = self._index  # in place: a transaction being built holds it
        ix.clear()
        for table in codec.KEYS:
            if table in idl.tables:
                for row in idl.tables[table].rows.values():
                    ix.add(table, row)
        self._flows.clear()

    # --- writing ----------------------------------------------------------------------------
    def _submit(self, what: str, build: Callable[[_Batch], Any]) -> Any:
        conn = self._conn
        if conn is None:
            raise StoreUnavailable(f"{what}: store at {self.remote} is not started")
        if threading.current_thread() is conn.thread:
            raise StoreError(
                f"{what}: called from the store's own thread (an on_change callback must hand "
                "its work to another thread)"
            )
        job = _Job(self, build, what)
        try:
            conn.queue_txn(job)
        except ovsdbapp_exceptions.TimeoutException:
            raise job._unavailable("busy: the transaction could not be queued") from None
        try:
            result = job.results.get(timeout=max(0.0, job.deadline - time.monotonic()) + 2.0)
        except queue.Empty:
            job.cancelled = True
            raise job._unavailable(f"no answer within {self.timeout:g} s") from None
        if isinstance(result, idlutils.ExceptionResult):
            raise result.ex
        return result

    def _refused(self, what: str, text: str) -> StoreError:
        try:
            err = json.loads(text)
        except ValueError:
            err = {}
        kind = err.get("error", "") if isinstance(err, dict) else ""
        details = err.get("details", text) if isinstance(err, dict) else text
        if kind == "constraint violation" and "identical values" in details:
            if '"Allocation" table' in details:
                return AllocationConflict(f"{what}: another owner holds that id: {details}")
            return StoreConflict(f"{what}: {details}")
        if kind == "referential integrity violation":
            return StoreConflict(f"{what}: {details}")
        return StoreError(f"{what}: refused by the store at {self.remote}: {kind} {details}")

    # tenants and counters
    def put_tenant(
        self, tenant_id: int, name: str, token_hash: str, limits: Mapping[str, int] | None = None
    ) -> None:
        row = codec.tenant_row(tenant_id, name, token_hash, limits)
        self._submit(f"tenant {tenant_id}", lambda b: b.put("Tenant", row))

    def delete_tenant(self, tenant_id: int) -> None:
        """The tenant and every virtual network it owns (with their subtrees, rules,
        groups, meters and allocations).  DNB networks are the DNB manager's to remove."""
        self._submit(f"delete tenant {tenant_id}", lambda b: self._delete_tenant(b, tenant_id))

    def put_counters(self, counters: Mapping[str, int]) -> None:
        """Raise the id counters to these values (never lowers one: a stale writer cannot
        hand an id out twice)."""
        row = codec.counters_row(counters)
        self._submit("counters", lambda b: self._put_counters(b, row))

    # virtual networks
    def put_network(self, net: VirtualNetwork) -> None:
        """Store `net` whole: its row, vswitches, vports, vlinks, paths, hosts and routes;
        rows it no longer has are deleted (a removed vswitch's rules, groups and meters
        too)."""
        rows = codec.network_rows(net)
        self._submit(f"network {net.id}", lambda b: self._put_network(b, rows, net))

    def delete_network(self, net_id: int) -> None:
        """The network, its subtree, its vswitches' rules, groups and meters, and its
        allocations."""
        self._submit(f"delete network {net_id}", lambda b: self._delete_network(b, net_id))

    def write_intent(self, change: IntentChangeLike) -> None:
        """One API call's change (virtual/manager.py's `IntentWriter`), in one transaction."""
        tenants = [codec.tenant_row(t.id, t.name, t.token_hash, t.limits) for t in change.tenants]
        nets = [(codec.network_rows(n), n) for n in change.networks]
        hosts = [(codec.host_row(n.id, h), n) for n, h in change.hosts]
        counters = codec.counters_row(change.counters) if change.counters else None

        def build(b: _Batch) -> None:
            for row in tenants:
                # a tenant's name and token never change once made: another under this id
                # is another writer's new tenant that drew the same id (refused; the writer
                # reads again).  Its limits may change (the admin's quotas).
                u = b.uuid("Tenant", (row["id"],))
                if u is not None and any(
                    b.current("Tenant", u)[c] != row[c] for c in ("name", "token_hash")
                ):
                    raise StoreConflict(
                        f"tenant {row['id']} was created by another writer meanwhile"
                    )
                b.put("Tenant", row)
            for tid in change.deleted_tenants:
                self._delete_tenant(b, tid)
            for rows, net in nets:
                if not net.revision and b.uuid("Virtual_Network", (net.id,)) is not None:
                    raise StoreConflict(f"network {net.id} was created by another writer meanwhile")
                self._put_network(b, rows, net)
            for row, net in hosts:  # one host of a network otherwise unchanged (a move)
                self._put_host(b, row, net)
            for nid in change.deleted_networks:
                self._delete_network(b, nid)
            if counters:
                self._put_counters(b, counters)

        self._submit("intent change", build)

    # allocations
    def apply_allocations(
        self,
        added: Iterable[tuple[Hashable, Hashable, int]],
        removed: Iterable[tuple[Hashable, Hashable]],
    ) -> None:
        """Record ids taken (space, owner, id) and given back (space, owner), at once.
        AllocationConflict if another owner (another instance) holds one of the ids."""
        add = [codec.allocation_row(s, o, i) for s, o, i in added]
        gone = {(codec.encode_key(s), codec.encode_key(o)) for s, o in removed}
        gone -= {codec.key("Allocation", r) for r in add}

        def build(b: _Batch) -> None:
            for k in gone:
                b.delete("Allocation", k)
            for row in add:
                b.put("Allocation", row)

        self._submit(f"allocations (+{len(add)} -{len(gone)})", build)

    def write_runtime(self, change: RuntimeChangeLike) -> None:
        """A batch of runtime state (persistence.py's `RuntimeChange`), in one transaction:
        the allocation journal ((space, owner) -> id, or None when released), per vswitch
        the rules changed (serial -> VFlow, or None when gone), the whole set of groups and
        meters of the vswitches listed, and the vswitches dropped (all their tables go;
        rules or groups of the same batch then make its new tables).

        Rules, groups and meters of a vswitch the store does not hold (its removal was
        written first) are left out, not refused: such a batch would otherwise fail again
        and again."""
        adds = [(s, o, i) for (s, o), i in change.allocations.items() if i is not None]
        add = [codec.allocation_row(*a) for a in adds]
        gone = {
            (codec.encode_key(s), codec.encode_key(o))
            for (s, o), i in change.allocations.items()
            if i is None
        } - {codec.key("Allocation", r) for r in add}
        flows: dict[tuple[int, str], tuple[list[Row], list[tuple[int, str, int]]]] = {}
        for (nid, vdpid), journal in change.flows.items():
            v = codec.hex64(vdpid)
            rows = [codec.flow_row(FlowRecord.of(nid, vdpid, vf)) for vf in journal.values() if vf]
            dels = [(nid, v, serial) for serial, vf in journal.items() if vf is None]
            flows[(nid, v)] = (rows, dels)
        tables: dict[tuple[int, str], tuple[dict[Key, Row], dict[Key, Row]]] = {}
        for (nid, vdpid), (grps, mtrs) in change.groups.items():
            gr = [codec.group_row(GroupRecord.of(nid, vdpid, i, g)) for i, g in grps.items()]
            mr = [codec.meter_row(MeterRecord.of(nid, vdpid, i, m)) for i, m in mtrs.items()]
            tables[(nid, codec.hex64(vdpid))] = (
                {codec.key("Tenant_Group", r): r for r in gr},
                {codec.key("Tenant_Meter", r): r for r in mr},
            )
        dropped = {(nid, codec.hex64(vdpid)) for nid, vdpid in change.dropped}

        def build(b: _Batch) -> None:
            for k in gone:
                b.delete("Allocation", k)
            for row in add:
                b.put("Allocation", row)
            for nid, v in sorted(dropped):
                where = [["network", "==", nid], ["vdpid", "==", v]]
                if (nid, v) not in flows:
                    b.ops.append({"op": "delete", "table": "Tenant_Flow", "where": where})
                    b.after.append(self._forget_rules([(nid, v)]))
                if (nid, v) not in tables:
                    for table in ("Tenant_Group", "Tenant_Meter"):
                        b.delete_where(table, nid, where)
            here = {sw for sw in set(flows) | set(tables) if b.uuid("Vswitch", sw) is not None}
            for sw in sorted((set(flows) | set(tables)) - here):
                log.info("store: network %d has no vswitch %s any more: its state is not kept", *sw)
            rows = [r for sw in sorted(here & set(flows)) for r in flows[sw][0]]
            dels = [d for sw in sorted(here & set(flows)) for d in flows[sw][1]]
            if rows or dels:
                self._apply_flows(b, rows, dels, replace=dropped & here & set(flows))
            for sw in sorted(here & set(tables)):
                self._require_vswitch(b, *sw, "groups and meters")
                for table, want in zip(("Tenant_Group", "Tenant_Meter"), tables[sw], strict=True):
                    have = [k for k in b.ix.keys_of(table, sw[0]) if k[1] == sw[1]]
                    b.sync(table, want, have)

        self._submit(
            f"runtime state (allocations +{len(add)} -{len(gone)}, rules of {len(flows)} "
            f"vswitches, groups of {len(tables)}, {len(dropped)} dropped)",
            build,
        )

    def reserve_allocations(
        self, rows: Iterable[tuple[tuple[Hashable, ...], Hashable, int]]
    ) -> list[tuple[tuple[Hashable, ...], int, Hashable]]:
        """Take these ids (space, owner, id) in one transaction, all or none, before they
        reach the wire: ids another instance holds are answered, not raised.

        Returns [] once committed (rows this owner already holds are confirmed at the
        server, not rewritten).  When another owner holds one of the (space, id) (the
        schema's index refuses the transaction), nothing is written and the answer is every
        such (space, id, their owner), read from the server just after: never empty (if
        the holder let go meanwhile, the transaction is tried again).  ValueError if `rows`
        gives one owner two ids in a space, or one id in a space to two owners."""
        wanted: dict[Key, Row] = {}
        holders: dict[tuple[str, int], str] = {}  # (space, id) -> owner, encoded
        for space, owner, ident in rows:
            row = codec.allocation_row(space, owner, ident)
            k = codec.key("Allocation", row)
            if wanted.setdefault(k, row)["id"] != ident:
                raise ValueError(f"owner {owner!r} is given two ids in space {space!r}")
            if holders.setdefault((row["space"], ident), row["owner"]) != row["owner"]:
                raise ValueError(f"id {ident} of space {space!r} is given to two owners")

        def build(b: _Batch) -> list[tuple[tuple[Hashable, ...], int, Hashable]]:
            for k, row in wanted.items():
                u = b.uuid("Allocation", k)
                if u is None:
                    b.insert("Allocation", row)  # the (space, id) index decides
                else:  # ours in the replica: still ours at the server, or try again
                    b.wait_exists("Allocation", u)
                    b.put("Allocation", row)
            b.refusal = lambda refused: self._held_by_others(b, refused, holders)
            return []

        result: list[tuple[tuple[Hashable, ...], int, Hashable]] = self._submit(
            f"reserve {len(wanted)} allocations", build
        )
        return result

    def _held_by_others(
        self, b: _Batch, refused: StoreError, holders: Mapping[tuple[str, int], str]
    ) -> Any:
        """After a refused reservation: every id other owners hold, at the server, in the
        spaces the reservation touched (not only the ids it asked for: a caller whose
        replica lags would otherwise learn one taken id per attempt and give up while
        free ids remain)."""
        if not isinstance(refused, AllocationConflict):
            raise refused
        spaces = sorted({s for s, _ in holders})
        wheres = [[["space", "==", s]] for s in spaces]
        found = b.job.select_each("Allocation", wheres, ["owner", "id"])
        out: list[tuple[tuple[Hashable, ...], int, Hashable]] = []
        clash = False
        for space, got in zip(spaces, found, strict=True):
            for raw in got:
                ident = raw["id"]
                mine = holders.get((space, ident))
                if raw["owner"] != mine:
                    s, theirs, _ = codec.allocation_from_row({**raw, "space": space})
                    out.append((s, ident, theirs))
                    clash = clash or mine is not None
        # no clash: the holder let go meanwhile, or our replica lagged behind our own rows
        return out if clash else _AGAIN

    # instances sharing one database, and which of them owns each virtual network
    def heartbeat(self, instance_id: str, address: str, lease_expiry: int) -> None:
        """Write this instance's row (its address, its lease), in one transaction.  A row
        another instance removed meanwhile (a lease it found expired) is written again."""
        _check_instance_id(instance_id)
        if not isinstance(address, str):
            raise ValueError(f"instance address {address!r} is not a string")
        if isinstance(lease_expiry, bool) or not isinstance(lease_expiry, int) or lease_expiry < 0:
            raise ValueError(f"lease expiry {lease_expiry!r} is not an integer >= 0")
        row: Row = {"id": instance_id, "address": address, "lease_expiry": lease_expiry}

        def build(b: _Batch) -> None:
            u = b.uuid("Instance", (instance_id,))
            if u is not None:
                # an update of a row gone at the server would write nothing
                b.wait_exists("Instance", u)
            if not b.put("Instance", row):
                b.ops.clear()  # nothing changed: no transaction

        self._submit(f"heartbeat of instance {instance_id}", build)

    def remove_instance(self, instance_id: str) -> None:
        """Delete the instance's row (idempotent): the networks it owned are then owned by
        none (the schema's weak reference is cleared), their Ownership rows stay."""
        _check_instance_id(instance_id)

        def build(b: _Batch) -> None:
            u = b.uuid("Instance", (instance_id,))
            b.ops.append(
                {"op": "delete", "table": "Instance", "where": [["id", "==", instance_id]]}
            )
            b.expect.keys.add(("Instance", (instance_id,)))
            if u is None:
                return
            for o in b.idl.tables["Ownership"].rows.values():  # cleared by this transaction
                owner = _instance_row(o)
                if owner is not None and owner.uuid == u:
                    b.expect.keys.add(("Ownership", (o.network,)))

        self._submit(f"remove instance {instance_id}", build)

    def claim(self, network: int, instance_id: str, previous: str | None) -> bool:
        """Make `instance_id` the owner of `network` if its owner is still `previous` (None:
        no Ownership row, or one without an instance), checked by the server at commit.

        False, not an exception, when the owner is another: the replica already says so,
        or the server's check failed (the replica then catches up before the answer, so
        `ownership()` shows who it is).  StoreError if the instance has no row (write its
        heartbeat first)."""
        _check_network(network)
        _check_instance_id(instance_id)
        if previous is not None:
            _check_instance_id(previous)

        def build(b: _Batch) -> bool:
            me = b.uuid("Instance", (instance_id,))
            if me is None:
                raise StoreError(
                    f"claim of network {network}: instance {instance_id!r} has no Instance row "
                    "in the store (its heartbeat must be written first)"
                )
            u = b.uuid("Ownership", (network,))
            owner = None if u is None else _instance_row(b.idl_row("Ownership", u))
            if (None if owner is None else owner.id) != previous:
                return False
            b.wait_exists("Instance", me)  # a weak reference to a row gone would be dropped
            mine = {"instance": ["uuid", str(me)]}
            if u is None:
                b.ops.append(
                    {
                        "op": "wait",
                        "table": "Ownership",
                        "timeout": 0,
                        "where": [["network", "==", network]],
                        "columns": ["network"],
                        "until": "==",
                        "rows": [],
                    }
                )
                b.insert("Ownership", {"network": network, **mine})
            else:
                was = None if owner is None else ["uuid", str(owner.uuid)]
                b.wait_equal("Ownership", u, {"instance": was})
                b.update("Ownership", u, (network,), mine)
            return True

        # a failed `wait` is TRY_AGAIN: the job waits for the replica to change and builds
        # again, which then answers False
        result: bool = self._submit(f"claim of network {network} by {instance_id}", build)
        return result

    def disown(self, network: int, instance_id: str) -> None:
        """Delete `network`'s Ownership row if (at the server) it still names `instance_id`
        (idempotent; another owner's row is left alone)."""
        _check_network(network)
        _check_instance_id(instance_id)

        def build(b: _Batch) -> None:
            me = b.uuid("Instance", (instance_id,))
            if me is None:
                return  # no row: it owns nothing (its references were cleared)
            where = [["network", "==", network], ["instance", "==", ["uuid", str(me)]]]
            b.ops.append({"op": "delete", "table": "Ownership", "where": where})
            b.expect.keys.add(("Ownership", (network,)))

        self._submit(f"disown network {network} by {instance_id}", build)

    # what tenants installed
    def apply_flow_changes(
        self, upserts: Iterable[FlowRecord], deletes: Iterable[FlowKey] = ()
    ) -> None:
        """Rules added or changed and rules gone, of any vswitches, in one transaction."""
        rows = [codec.flow_row(f) for f in upserts]
        dels = [(n, codec.hex64(v), serial) for n, v, serial in deletes]
        self._submit(
            f"rules (+{len(rows)} -{len(dels)})", lambda b: self._apply_flows(b, rows, dels)
        )

    def apply_group_changes(
        self, upserts: Iterable[GroupRecord], deletes: Iterable[GroupKey] = ()
    ) -> None:
        rows = [codec.group_row(g) for g in upserts]
        keys = [codec.state_key(*k) for k in deletes]
        self._submit(
            f"groups (+{len(rows)} -{len(keys)})",
            lambda b: self._apply_state(b, "Tenant_Group", rows, keys),
        )

    def apply_meter_changes(
        self, upserts: Iterable[MeterRecord], deletes: Iterable[MeterKey] = ()
    ) -> None:
        rows = [codec.meter_row(m) for m in upserts]
        keys = [codec.state_key(*k) for k in deletes]
        self._submit(
            f"meters (+{len(rows)} -{len(keys)})",
            lambda b: self._apply_state(b, "Tenant_Meter", rows, keys),
        )

    # dedicated network bridges
    def put_dnb_node(self, node: Node) -> None:
        row = codec.dnb_node_row(node)
        self._submit(f"DNB node {node.name}", lambda b: b.put("Dnb_Node", row))

    def delete_dnb_node(self, name: str) -> None:
        """The node, and the VM bindings and tenant ports on it."""

        def build(b: _Batch) -> None:
            b.delete("Dnb_Node", (name,))
            for table in ("Dnb_Vm", "Dnb_Tenant_Port"):
                for k, u in list(b.ix.by_key[table].items()):
                    if b.idl_row(table, u).node == name:
                        b.delete(table, k)

        self._submit(f"delete DNB node {name}", build)

    def put_dnb_network(self, net: Network) -> None:
        row = codec.dnb_network_row(net)
        self._submit(f"DNB network {net.id}", lambda b: b.put("Dnb_Network", row))

    def delete_dnb_network(self, net_id: str) -> None:
        """The network, and its VM bindings and tenant ports."""

        def build(b: _Batch) -> None:
            b.delete("Dnb_Network", (net_id,))
            for table in ("Dnb_Vm", "Dnb_Tenant_Port"):
                for k in b.ix.keys_of(table, net_id):
                    b.delete(table, k)

        self._submit(f"delete DNB network {net_id}", build)

    def put_vm_binding(self, vm: VmBinding) -> None:
        row = codec.dnb_vm_row(vm)
        self._submit(f"VM {vm.mac} of {vm.network}", lambda b: b.put("Dnb_Vm", row))

    def delete_vm_binding(self, network: str, mac: str) -> None:
        self._submit(f"delete VM {mac} of {network}", lambda b: b.delete("Dnb_Vm", (network, mac)))

    def put_tenant_port(self, port: TenantPort) -> None:
        row = codec.dnb_port_row(port)
        self._submit(
            f"tenant port {port.name} on {port.node}", lambda b: b.put("Dnb_Tenant_Port", row)
        )

    def delete_tenant_port(self, node: str, name: str) -> None:
        self._submit(
            f"delete tenant port {name} on {node}",
            lambda b: b.delete("Dnb_Tenant_Port", (node, name)),
        )

    def put_dnb_intent(self, intent: Intent) -> None:
        """Make the stored DNB intent exactly `intent` (what `DnbManager._commit` holds
        after a step), in one transaction."""
        tables = codec.dnb_rows(intent)

        def build(b: _Batch) -> None:
            for table in codec.DNB_TABLES:
                b.sync(table, tables[table], list(b.ix.by_key[table]))

        self._submit("DNB intent", build)

    # --- builders (IDL thread) ----------------------------------------------------------------
    def _put_counters(self, b: _Batch, row: Row) -> None:
        u = b.uuid("Counters", ())
        if u is None:
            b.insert("Counters", {**dict.fromkeys(codec.COUNTERS, 1), **row})
            return
        cur = b.current("Counters", u)
        higher = {k: v for k, v in row.items() if v > cur[k]}
        if higher:
            b.update("Counters", u, (), higher)

    def _put_network(
        self, b: _Batch, rows: codec.NetworkRows, net: VirtualNetwork | None = None
    ) -> None:
        """`net` (when given) carries the generation its writer last read: a network another
        writer replaced since is refused (StoreConflict; the writer reads it again), so one
        instance's change is never undone by another's stale copy."""
        nid = rows.network["id"]
        u = b.uuid("Virtual_Network", (nid,))
        if net is not None and net.revision and u is not None:
            _check_revision(b, nid, u, net)
        mark = len(b.ops)
        old_switches = b.ix.keys_of("Vswitch", nid)
        for table in codec.NETWORK_TABLES:
            b.sync(table, rows.tables[table], b.ix.keys_of(table, nid))
        for k in old_switches - set(rows.tables["Vswitch"]):
            self._drop_vswitch_state(b, nid, k[1])
        if u is None:
            b.insert("Virtual_Network", {**rows.network, "generation": 1})
            if net is not None:
                b.after.append(_set_revision(net, 1))
            return
        cur = b.current("Virtual_Network", u)
        cols = {c: v for c, v in rows.network.items() if c != "id" and cur.get(c) != v}
        if not cols and len(b.ops) == mark:
            return  # nothing changed
        _next_generation(b, nid, u, net, mark, cols)

    def _put_host(self, b: _Batch, row: Row, net: VirtualNetwork) -> None:
        """One host row of `net` (whose other rows did not change): written alone, the
        network's generation checked and raised as `_put_network` does, so a live
        migration's write is one row, not the network re-encoded and compared."""
        nid = net.id
        u = b.uuid("Virtual_Network", (nid,))
        if u is None:
            raise StoreConflict(f"network {nid} was removed by another writer meanwhile")
        if net.revision:
            _check_revision(b, nid, u, net)
        mark = len(b.ops)
        if b.put("Host", row):
            _next_generation(b, nid, u, net, mark, {})

    def _drop_vswitch_state(self, b: _Batch, nid: int, vdpid: str) -> None:
        """A vswitch is gone: its rules, groups and meters, and the physical ids its groups
        and meters held (allocations named by no network, found by id)."""
        sw = b.uuid("Vswitch", (nid, vdpid))
        first = b.current("Vswitch", sw)["dpids"].get(0) if sw is not None else None
        for table, kind in (("Tenant_Group", "group"), ("Tenant_Meter", "meter")):
            if first is None:
                break
            space = codec.encode_key((kind, codec.unhex64(first)))
            for k in b.ix.keys_of(table, nid):
                u = b.uuid(table, k) if k[1] == vdpid else None
                if u is None:
                    continue
                ak = b.ix.alloc_ids.get((space, b.idl_row(table, u).phys_id))
                au = None if ak is None else b.uuid("Allocation", ak)
                # only an id named by no network is a tenant group's or meter's
                if ak and au and _optional(b.idl_row("Allocation", au).network) is None:
                    b.delete("Allocation", ak)
        where = [["network", "==", nid], ["vdpid", "==", vdpid]]
        for table in ("Tenant_Group", "Tenant_Meter"):
            if any(k[1] == vdpid for k in b.ix.keys_of(table, nid)):
                b.delete_where(table, nid, where)
        b.ops.append({"op": "delete", "table": "Tenant_Flow", "where": where})
        b.after.append(self._forget_rules([(nid, vdpid)]))

    def _delete_network(self, b: _Batch, nid: int) -> None:
        tables = ("Virtual_Network", *codec.NETWORK_TABLES, "Tenant_Group", "Tenant_Meter",
                  "Allocation")  # fmt: skip
        for k in b.ix.keys_of("Vswitch", nid):
            self._drop_vswitch_state(b, nid, k[1])
        for t in tables:
            if b.ix.by_net[t].get(nid):
                b.delete_where(t, nid, [[codec.NET_COLUMN[t], "==", nid]])
        # whatever the server holds: a claim our replica has not seen yet must not outlive
        # the network (one operation, nothing if there is no row)
        b.delete_where("Ownership", nid, [["network", "==", nid]])
        # rules are not replicated: delete whatever the server holds of this network
        b.ops.append({"op": "delete", "table": "Tenant_Flow", "where": [["network", "==", nid]]})

        b.after.append(self._forget_rules([sw for sw in self._flows if sw[0] == nid]))

    def _delete_tenant(self, b: _Batch, tid: int) -> None:
        b.delete("Tenant", (tid,))
        for (nid,), u in list(b.ix.by_key["Virtual_Network"].items()):
            if (
                u in b.idl.tables["Virtual_Network"].rows
                and b.idl_row("Virtual_Network", u).tenant == tid
            ):
                self._delete_network(b, nid)

    def _require_vswitch(self, b: _Batch, nid: int, vdpid: str, what: str) -> None:
        u = b.uuid("Vswitch", (nid, vdpid))
        if u is None:
            raise StoreError(
                f"network {nid} has no vswitch {vdpid} in the store: its {what} cannot be stored"
            )
        b.wait_exists("Vswitch", u)

    def _apply_state(self, b: _Batch, table: str, rows: list[Row], deletes: list[Key]) -> None:
        what = table.split("_")[1].lower() + "s"
        for nid, vdpid in sorted({(r["network"], r["vdpid"]) for r in rows}):
            self._require_vswitch(b, nid, vdpid, what)
        upserted = {codec.key(table, r) for r in rows}
        for k in deletes:
            if k not in upserted:
                b.delete(table, k)
        for r in rows:
            b.put(table, r, compare=False)

    def _forget_rules(self, switches: Iterable[tuple[int, str]]) -> Callable[[list[Any]], bool]:
        """A hook for after a commit: what these vswitches hold is to be read again."""
        gone = list(switches)

        def hook(_: list[Any]) -> bool:
            for sw in gone:
                self._flows.pop(sw, None)
            return False

        return hook

    def _known_serials(self, b: _Batch, nid: int, vdpid: str) -> set[int]:
        """The rule serials the server holds for a vswitch (read once, then kept)."""
        got = self._flows.get((nid, vdpid))
        if got is None:
            where = [["network", "==", nid], ["vdpid", "==", vdpid]]
            rows = b.job.select("Tenant_Flow", where, ["serial"])
            got = self._flows[(nid, vdpid)] = {r["serial"] for r in rows}
        return got

    def _apply_flows(
        self,
        b: _Batch,
        rows: list[Row],
        dels: list[tuple[int, str, int]],
        replace: Iterable[tuple[int, str]] = (),
    ) -> None:
        """Upsert `rows`, delete `dels`; the vswitches in `replace` keep only `rows`."""
        written = sorted({(r["network"], r["vdpid"]) for r in rows})
        for nid, vdpid in written:
            self._require_vswitch(b, nid, vdpid, "rules")
        replace = set(replace)
        switches = sorted(set(written) | {(n, v) for n, v, _ in dels} | replace)
        known = {sw: self._known_serials(b, *sw) for sw in switches}
        upserted = {(r["network"], r["vdpid"], r["serial"]) for r in rows}
        dels = dels + [(*sw, serial) for sw in sorted(replace) for serial in sorted(known[sw])]
        deleted = sorted({k for k in dels if k not in upserted})
        for k in deleted:
            b.ops.append(
                {"op": "delete", "table": "Tenant_Flow", "where": _where_uuid(flow_uuid(*k))}
            )
        updates: list[tuple[int, tuple[int, str, int]]] = []
        keycols = codec.KEYS["Tenant_Flow"]
        for r in rows:
            k = (r["network"], r["vdpid"], r["serial"])
            u = flow_uuid(*k)
            if k[2] in known[(k[0], k[1])]:
                updates.append((len(b.ops), k))
                cols = {c: v for c, v in r.items() if c not in keycols}
                b.ops.append(
                    {
                        "op": "update",
                        "table": "Tenant_Flow",
                        "where": _where_uuid(u),
                        "row": codec.to_json("Tenant_Flow", cols),
                    }
                )
            else:
                b.ops.append(
                    {
                        "op": "insert",
                        "table": "Tenant_Flow",
                        "uuid": str(u),
                        "row": codec.to_json("Tenant_Flow", r),
                    }
                )

        def after(reply: list[Any]) -> bool:
            for n, v, serial in deleted:
                self._flows.get((n, v), set()).discard(serial)
            for n, v, serial in upserted:
                got = self._flows.get((n, v))
                if got is not None:
                    got.add(serial)
            # an update that found no row: another writer deleted it meanwhile; write the
            # batch again (idempotent), inserting those rows
            vanished = {
                (k[0], k[1])
                for i, k in updates
                if i < len(reply) and isinstance(reply[i], dict) and reply[i].get("count") == 0
            }
            for sw in vanished:
                self._flows.pop(sw, None)
            return bool(vanished)

        def on_error(error: str) -> bool:
            # a row we did not know of (another writer's): read the serials again, retry
            if "duplicate uuid" in error or (
                "identical values" in error and "Tenant_Flow" in error
            ):
                for sw in switches:
                    self._flows.pop(sw, None)
                return True
            return False

        b.after.append(after)
        b.on_error.append(on_error)

    # --- reading ------------------------------------------------------------------------------
    def _rows(self, table: str) -> Iterable[tuple[Key, Row]]:
        rows = self._idl.tables[table].rows
        for k, u in self._index.by_key[table].items():
            r = rows.get(u)
            if r is not None:
                yield k, dict(self._index.decoded(table, r))

    def _row(self, table: str, k: Key) -> Row | None:
        u = self._index.by_key[table].get(k)
        r = None if u is None else self._idl.tables[table].rows.get(u)
        if r is None:
            return None
        return dict(self._index.decoded(table, r))

    def _tenants(self) -> list[Tenant]:
        return [codec.tenant_from_row(r) for _, r in sorted(self._rows("Tenant"))]

    def _counters(self) -> dict[str, int]:
        counters = self._row("Counters", ()) or {}
        return {k: counters.get(k, 1) for k in codec.COUNTERS}

    def _read(self) -> Any:
        conn = self._conn
        if conn is None:
            raise StoreUnavailable(f"store at {self.remote} is not started")
        return conn.lock

    def _network(self, nid: int) -> VirtualNetwork | None:
        top = self._row("Virtual_Network", (nid,))
        if top is None:
            return None
        rows = codec.NetworkRows(top)
        for table in codec.NETWORK_TABLES:
            for k in self._index.keys_of(table, nid):
                r = self._row(table, k)
                if r is not None:
                    rows.tables[table][k] = r
        try:
            return codec.network_from_rows(rows)
        except ValueError as exc:
            raise StoreError(f"store at {self.remote}: {exc}") from None

    def load(self) -> Snapshot:
        """Everything, as one consistent snapshot (read on the store's thread, rules with one
        `select`)."""
        result: Snapshot = self._submit("load", self._load)
        return result

    def _load(self, b: _Batch) -> Snapshot:
        snap = Snapshot()
        snap.tenants = self._tenants()
        for (nid,) in sorted(self._index.by_key["Virtual_Network"]):
            net = self._network(nid)
            if net is not None:
                snap.networks[nid] = net
        snap.counters = self._counters()
        snap.allocations = sorted(
            (codec.allocation_from_row(r) for _, r in self._rows("Allocation")), key=repr
        )
        snap.flows, snap.groups, snap.meters = self._state(b, None)
        snap.dnb = codec.dnb_from_rows(
            {t: [r for _, r in sorted(self._rows(t))] for t in codec.DNB_TABLES}
        )
        return snap

    def load_network(self, net_id: int) -> VirtualNetwork | None:
        """One network as stored now (None: not stored)."""
        with self._read():
            return self._network(net_id)

    def load_state(
        self, net_id: int
    ) -> tuple[
        dict[VSwitchKey, list[FlowRecord]],
        dict[VSwitchKey, list[GroupRecord]],
        dict[VSwitchKey, list[MeterRecord]],
    ]:
        """One network's rules, groups and meters per (network, vdpid), e.g. to take the
        network over from another instance."""
        result: tuple[Any, Any, Any] = self._submit(
            f"load network {net_id}'s rules", lambda b: self._state(b, net_id)
        )
        return result

    def _state(self, b: _Batch, nid: int | None) -> tuple[Any, Any, Any]:
        where = [] if nid is None else [["network", "==", nid]]
        flows: dict[VSwitchKey, list[FlowRecord]] = {}
        serials: dict[tuple[int, str], set[int]] = {
            k: set() for k in self._index.by_key["Vswitch"] if nid is None or k[0] == nid
        }
        for raw in b.job.select("Tenant_Flow", where):
            r = codec.from_json("Tenant_Flow", raw)
            rec = codec.flow_from_row(r)
            flows.setdefault((rec.net_id, rec.vdpid), []).append(rec)
            serials.setdefault((r["network"], r["vdpid"]), set()).add(rec.serial)
        for recs in flows.values():
            recs.sort(key=lambda f: f.serial)
        self._flows.update(serials)  # what the server holds now, known for free
        out: list[dict[VSwitchKey, list[Any]]] = [dict(sorted(flows.items()))]
        for table, decode in (
            ("Tenant_Group", codec.group_from_row),
            ("Tenant_Meter", codec.meter_from_row),
        ):
            per: dict[VSwitchKey, list[Any]] = {}
            if nid is None:
                found = list(self._rows(table))
            else:
                found = []
                for k in self._index.keys_of(table, nid):
                    row = self._row(table, k)
                    if row is not None:
                        found.append((k, row))
            for _, row in sorted(found, key=lambda kr: kr[0]):
                item = decode(row)
                per.setdefault((item.net_id, item.vdpid), []).append(item)
            out.append(per)
        return out[0], out[1], out[2]

    def allocations(self) -> list[Allocation]:
        with self._read():
            return sorted(
                (codec.allocation_from_row(r) for _, r in self._rows("Allocation")), key=repr
            )

    def load_tenants(self) -> list[Tenant]:
        """The tenants as the replica holds them (by id), e.g. another instance's writes."""
        with self._read():
            return self._tenants()

    def load_dnb(self) -> Intent:
        """The DNB intent as the replica holds it (an instance taking the nodes over)."""
        with self._read():
            return codec.dnb_from_rows(
                {t: [r for _, r in sorted(self._rows(t))] for t in codec.DNB_TABLES}
            )

    def load_counters(self) -> dict[str, int]:
        """The id counters as the replica holds them (1 for a counter never written)."""
        with self._read():
            return self._counters()

    def network_ids(self) -> list[int]:
        """Every virtual network's id, as the replica holds them."""
        with self._read():
            return sorted(k[0] for k in self._index.by_key["Virtual_Network"])

    def instances(self) -> dict[str, tuple[str, int]]:
        """Instance id -> (address, lease expiry), as the replica holds them."""
        with self._read():
            return {r["id"]: (r["address"], r["lease_expiry"]) for _, r in self._rows("Instance")}

    def ownership(self) -> dict[int, str | None]:
        """Network id -> the instance owning it (None: its row names none any more), as
        the replica holds it."""
        with self._read():
            out: dict[int, str | None] = {}
            for row in self._idl.tables["Ownership"].rows.values():
                owner = _instance_row(row)
                out[row.network] = None if owner is None else owner.id
            return dict(sorted(out.items()))

    def __repr__(self) -> str:
        return f"Store({self.remote!r}, started={self.started}, connected={self.connected})"


__all__ = ["IntentChangeLike", "RuntimeChangeLike", "Store", "flow_uuid"]

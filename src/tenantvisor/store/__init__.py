"""Persistence of all intent and tenant state, on an OVSDB schema of our own (as OVN does).

* `tenantvisor.ovsschema`: the schema (tables, constraints, unique indexes);
* `codec`: pure conversions between the model (virtual/, dedicated/) and rows;
* `records`: the store's own records (tenant rules, groups, meters), `Snapshot`, `ChangeSet`;
* `server`: the embedded ovsdb-server (`EmbeddedServer`) and Raft clusters (`Cluster`);
* `store`: `Store`, the client: load everything, write each change in one transaction.
"""

from tenantvisor.store.errors import (
    AllocationConflict,
    ServerError,
    StoreConflict,
    StoreError,
    StoreUnavailable,
)
from tenantvisor.store.records import ChangeSet, FlowRecord, GroupRecord, MeterRecord, Snapshot
from tenantvisor.store.server import Cluster, EmbeddedServer, convert_online, create_cluster
from tenantvisor.store.store import Store

__all__ = [
    "AllocationConflict",
    "ChangeSet",
    "Cluster",
    "EmbeddedServer",
    "FlowRecord",
    "GroupRecord",
    "MeterRecord",
    "ServerError",
    "Snapshot",
    "Store",
    "StoreConflict",
    "StoreError",
    "StoreUnavailable",
    "convert_online",
    "create_cluster",
]

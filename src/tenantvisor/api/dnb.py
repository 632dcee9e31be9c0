"""REST for dedicated bridges: compute nodes (admin), DNB/CNB networks, VMs, tenant control.

Same tokens as the rest of the API (`api/auth.py`): the admin registers nodes; a tenant
creates networks, attaches VMs, points its dedicated bridges at its own controller and adds
its own ports, and sees only its own networks (others answer 404 like missing ones).  Bodies
are validated twice: shape and bounds here (pydantic, `extra="forbid"`), meaning in
`dedicated/manager.py`.  Handlers are plain `def`s: FastAPI runs them in its thread pool, so
a node step (OVSDB round trips, ovs-ofctl) never blocks the event loop the hypervisor uses.
With an intent store, a change is written to it once the nodes hold it; a store that is
away or fails answers 503 naming it, and the nodes are left (or put back) as they were.

No `from __future__ import annotations`: FastAPI must see the local `Auth` alias as an object.
"""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Response, status
from pydantic import BaseModel, ConfigDict, Field

from tenantvisor.api.auth import Caller, caller_dependency
from tenantvisor.dedicated.manager import DnbManager
from tenantvisor.dedicated.model import Network, Node, TenantPort, VmBinding
from tenantvisor.errors import InvalidRequest, Unavailable
from tenantvisor.virtual.manager import NetworkManager

Name = Annotated[str, Field(min_length=1, max_length=64)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NodeCreate(_Body):
    name: Name
    ovsdb: Annotated[str, Field(min_length=6, max_length=256)]
    transport_ip: Annotated[str, Field(max_length=32, examples=["10.123.0.1/24"])]
    transport_port: Name = "eth1"
    netns: Name | None = None
    rundir: Annotated[str, Field(max_length=256)] | None = None


class NetworkCreate(_Body):
    id: Annotated[str, Field(min_length=1, max_length=32, examples=["blue"])]
    mode: Literal["dedicated", "common"] = "dedicated"
    tenant_id: int | None = Field(None, description="owner (admin only)")
    segmentation_id: int | None = Field(None, description="GRE key (admin only)")
    endpoint_subnet: Annotated[str, Field(max_length=32)] | None = Field(
        None, description="tunnel endpoint subnet, at least a /24 (admin only)"
    )


class VmAttach(_Body):
    node: Name
    mac: Annotated[str, Field(max_length=32, examples=["02:00:00:00:00:01"])]
    ip: Annotated[str, Field(max_length=32, examples=["192.168.1.1/24"])]
    interface: Annotated[str, Field(min_length=1, max_length=64, examples=["tap1"])]


class ControllerSet(_Body):
    target: Annotated[str, Field(max_length=64, examples=["tcp:10.123.0.250:6653"])] | None


class PortCreate(_Body):
    node: Name
    name: Annotated[str, Field(min_length=1, max_length=64)]
    kind: Literal["gre", "vxlan", "geneve", "internal"]
    remote_ip: Annotated[str, Field(max_length=32)] | None = None
    key: int | None = None


def node_out(n: Node, admin: bool) -> dict[str, Any]:
    if not admin:
        return {"name": n.name, "index": n.index}
    return {
        "name": n.name,
        "index": n.index,
        "ovsdb": n.ovsdb,
        "transport_ip": str(n.transport_ip),
        "transport_port": n.transport_port,
        "netns": n.netns,
    }


def network_out(dnb: DnbManager, net: Network) -> dict[str, Any]:
    return {
        "id": net.id,
        "tenant_id": net.tenant_id,
        "mode": net.mode.value,
        "segmentation_id": net.segmentation_id,
        "local_vid": net.local_vid,
        "endpoint_subnet": str(net.endpoint_subnet),
        "controller": net.controller,
        "nodes": sorted(dnb.intent.hosts(net.id)),
        "vms": sum(1 for v in dnb.intent.vms.values() if v.network == net.id),
    }


def vm_out(vm: VmBinding) -> dict[str, Any]:
    return {
        "network": vm.network,
        "node": vm.node,
        "mac": vm.mac,
        "ip": str(vm.ip),
        "interface": vm.interface,
    }


def port_out(p: TenantPort) -> dict[str, Any]:
    return {
        "network": p.network,
        "node": p.node,
        "name": p.name,
        "kind": p.kind.value,
        "remote_ip": None if p.remote_ip is None else str(p.remote_ip),
        "key": p.key,
    }


def build_dnb_router(manager: NetworkManager, dnb: DnbManager) -> APIRouter:
    """Routes for nodes and DNB networks, bound to one tenant registry and one DnbManager."""

    def here() -> None:
        """Several instances: one manages the nodes; the others send callers to it."""
        other = dnb.elsewhere()
        if other is not None:
            raise Unavailable(
                f"dedicated bridges are managed by tenantvisor instance {other}: use its API"
            )

    router = APIRouter(prefix="/v1", dependencies=[Depends(here)])
    Auth = Annotated[Caller, Depends(caller_dependency(manager))]

    def tid(caller: Caller) -> int | None:
        return None if caller.tenant is None else caller.tenant.id

    # --- nodes -------------------------------------------------------------------------------
    @router.post("/nodes", status_code=status.HTTP_201_CREATED, tags=["nodes"])
    def add_node(body: NodeCreate, caller: Auth) -> dict[str, Any]:
        """Register a compute node (admin): connect to its OVSDB, build br-int/br-tun."""
        caller.require_admin()
        n = dnb.add_node(
            body.name, body.ovsdb, body.transport_ip, body.transport_port, body.netns, body.rundir
        )
        return node_out(n, True)

    @router.get("/nodes", tags=["nodes"])
    def list_nodes(caller: Auth) -> list[dict[str, Any]]:
        """Nodes (tenants see names only: they place VMs by node)."""
        return [node_out(n, caller.is_admin) for n in dnb.nodes()]

    @router.get("/nodes/{name}", tags=["nodes"])
    def get_node(name: str, caller: Auth) -> dict[str, Any]:
        """A node's bridges and tunnels as read from its OVSDB (admin); `in_sync`: reconciled
        with intent since its OVSDB connection last came up (false after a restart until the
        node is reached)."""
        caller.require_admin()
        return dnb.node_info(name)

    @router.delete("/nodes/{name}", status_code=status.HTTP_204_NO_CONTENT, tags=["nodes"])
    def remove_node(name: str, caller: Auth) -> Response:
        caller.require_admin()
        dnb.remove_node(name)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    # --- networks ----------------------------------------------------------------------------
    @router.post("/dnb/networks", status_code=status.HTTP_201_CREATED, tags=["dnb"])
    def create_network(body: NetworkCreate, caller: Auth) -> dict[str, Any]:
        """Create a tenant network; `mode` dedicated (DNB) or common (CNB baseline)."""
        if caller.tenant is not None:
            if body.tenant_id not in (None, caller.tenant.id):
                raise InvalidRequest("tenant_id: only the admin may create for another tenant")
            if body.segmentation_id is not None or body.endpoint_subnet is not None:
                raise InvalidRequest("segmentation_id and endpoint_subnet are the admin's")
            owner = caller.tenant.id
        elif body.tenant_id is None:
            raise InvalidRequest("tenant_id is required when the admin creates a network")
        else:
            owner = manager.get_tenant(body.tenant_id).id
        net = dnb.create_network(
            owner, body.id, body.mode, body.segmentation_id, body.endpoint_subnet
        )
        return network_out(dnb, net)

    @router.get("/dnb/networks", tags=["dnb"])
    def list_networks(caller: Auth) -> list[dict[str, Any]]:
        return [network_out(dnb, n) for n in dnb.networks(tid(caller))]

    @router.get("/dnb/networks/{net_id}", tags=["dnb"])
    def get_network(net_id: str, caller: Auth) -> dict[str, Any]:
        return network_out(dnb, dnb.get_network(net_id, tid(caller)))

    @router.delete("/dnb/networks/{net_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["dnb"])
    def delete_network(net_id: str, caller: Auth) -> Response:
        dnb.delete_network(net_id, tid(caller))
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    # --- VMs ---------------------------------------------------------------------------------
    @router.post("/dnb/networks/{net_id}/vms", status_code=status.HTTP_201_CREATED, tags=["dnb"])
    def attach_vm(net_id: str, body: VmAttach, caller: Auth) -> dict[str, Any]:
        """Plug a VM's tap into the network on a node; builds bridges/tunnels/rules it needs."""
        return dnb.attach_vm(net_id, tid(caller), body.node, body.mac, body.ip, body.interface)

    @router.get("/dnb/networks/{net_id}/vms", tags=["dnb"])
    def list_vms(net_id: str, caller: Auth) -> list[dict[str, Any]]:
        return [vm_out(v) for v in dnb.vms(net_id, tid(caller))]

    @router.delete("/dnb/networks/{net_id}/vms/{mac}", tags=["dnb"])
    def detach_vm(net_id: str, mac: str, caller: Auth) -> dict[str, Any]:
        """Unplug a VM; the last one on a node takes the network's bridges there with it."""
        return dnb.detach_vm(net_id, tid(caller), mac)

    # --- tenant control ----------------------------------------------------------------------
    @router.put("/dnb/networks/{net_id}/controller", tags=["dnb"])
    def set_controller(net_id: str, body: ControllerSet, caller: Auth) -> dict[str, Any]:
        """Point the network's dedicated bridges at the tenant's controller (null removes it)."""
        return network_out(dnb, dnb.set_controller(net_id, tid(caller), body.target))

    @router.post("/dnb/networks/{net_id}/ports", status_code=status.HTTP_201_CREATED, tags=["dnb"])
    def add_port(net_id: str, body: PortCreate, caller: Auth) -> dict[str, Any]:
        """A tenant's own port: a tunnel to its network's endpoints, or an internal port."""
        p = dnb.add_tenant_port(
            net_id, tid(caller), body.node, body.name, body.kind, body.remote_ip, body.key
        )
        return port_out(p)

    @router.get("/dnb/networks/{net_id}/ports", tags=["dnb"])
    def list_ports(net_id: str, caller: Auth) -> list[dict[str, Any]]:
        return [port_out(p) for p in dnb.tenant_ports(net_id, tid(caller))]

    @router.delete(
        "/dnb/networks/{net_id}/ports/{node}/{name}",
        status_code=status.HTTP_204_NO_CONTENT,
        tags=["dnb"],
    )
    def del_port(net_id: str, node: str, name: str, caller: Auth) -> Response:
        dnb.del_tenant_port(net_id, tid(caller), node, name)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    # --- provider views ----------------------------------------------------------------------
    @router.get("/dnb/equations", tags=["dnb"])
    def equations(caller: Auth) -> dict[str, Any]:
        """Bridges and tunnels on every node against the paper's equations (1)-(4) (admin)."""
        caller.require_admin()
        return dnb.equations()

    @router.post("/dnb/reassert", tags=["dnb"])
    def reassert(caller: Auth) -> dict[str, int]:
        """Re-assert provider rules now (admin; the daemon also does it periodically)."""
        caller.require_admin()
        return {"reasserted": dnb.reassert()}

    return router

"""Fixtures: a real NetworkManager over a real PhysicalTopology, and the app around it.

The fabric is fed through PhysicalTopology's own update methods, as the pswitch sessions
feed it in the daemon:

    h  h          h           h  h
    1  2          1           1  2
   [s1]3 ---- 3[s2]4 ---- 3[s3]          [s4]3 ---- 3[s5]   (a separate island)
                                            1           1

s4/s5 are reachable from nothing else, so a vlink from the line to the island has no path.
"""

from __future__ import annotations

import copy
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
import uvicorn

from tenantvisor.api.app import create_app
from tenantvisor.physical.topology import PhysicalTopology, PLink, PPort, PSwitchInfo
from tenantvisor.virtual.manager import NetworkManager

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

ADMIN = "admin-token-for-tests"


def quiet_testclient() -> type[TestClient]:
    """FastAPI's TestClient, imported quietly: Starlette 1.x warns that it wants httpx2."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    return TestClient


def _switch(topo: PhysicalTopology, dpid: int, ports: list[int], of_version: int = 4) -> None:
    topo.add_switch(PSwitchInfo(dpid=dpid, n_tables=254, of_version=of_version))
    for n in ports:
        topo.set_port(dpid, PPort(n, f"s{dpid}-eth{n}", f"02:00:00:00:{dpid:02x}:{n:02x}"))


def _link(topo: PhysicalTopology, a: tuple[int, int], b: tuple[int, int]) -> None:
    topo.add_link(PLink(a[0], a[1], b[0], b[1]))
    topo.add_link(PLink(b[0], b[1], a[0], a[1]))


def build_topology() -> PhysicalTopology:
    topo = PhysicalTopology()
    _switch(topo, 1, [1, 2, 3])
    _switch(topo, 2, [1, 3, 4])
    _switch(topo, 3, [1, 2, 3])
    _switch(topo, 4, [1, 3])
    _switch(topo, 5, [1, 3])
    _link(topo, (1, 3), (2, 3))
    _link(topo, (2, 4), (3, 3))
    _link(topo, (4, 3), (5, 3))
    return topo


def build_ring() -> PhysicalTopology:
    """A ring for big switches and backup paths, and an OpenFlow 1.0 pswitch off it:

     h           h
     1           1
    [r1]2 ---- 2[r2]
     3           3
     |           |
     3           2
    [r4]2 ---- 3[r3]1 h          [r5]2 ---- 4[r4]   (r5: OpenFlow 1.0, host on port 1)
     1
     h
    """
    topo = PhysicalTopology()
    _switch(topo, 1, [1, 2, 3])
    _switch(topo, 2, [1, 2, 3])
    _switch(topo, 3, [1, 2, 3])
    _switch(topo, 4, [1, 2, 3, 4])
    _switch(topo, 5, [1, 2], of_version=1)
    _link(topo, (1, 2), (2, 2))
    _link(topo, (2, 3), (3, 2))
    _link(topo, (3, 3), (4, 2))
    _link(topo, (4, 3), (1, 3))
    _link(topo, (5, 2), (4, 4))
    return topo


def snapshot(manager: NetworkManager) -> Any:
    """Everything a refused request must leave as it was: tenants and networks, deep."""
    return copy.deepcopy((manager.tenants, manager.networks, manager._vswitch_index))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def manager() -> NetworkManager:
    return NetworkManager(build_topology(), ADMIN)


@pytest.fixture
def client(manager: NetworkManager) -> Iterator[TestClient]:
    with quiet_testclient()(create_app(manager)) as c:
        yield c


@pytest.fixture
def ring_manager() -> NetworkManager:
    return NetworkManager(build_ring(), ADMIN)


@pytest.fixture
def ring_client(ring_manager: NetworkManager) -> Iterator[TestClient]:
    with quiet_testclient()(create_app(ring_manager)) as c:
        yield c


@pytest.fixture
def admin() -> dict[str, str]:
    return bearer(ADMIN)


class LiveServer:
    """The app served by a real uvicorn on 127.0.0.1, in a background thread."""

    def __init__(self, manager: NetworkManager) -> None:
        self.manager = manager
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(
            create_app(manager), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live(manager: NetworkManager) -> Iterator[LiveServer]:
    with LiveServer(manager) as srv:
        yield srv

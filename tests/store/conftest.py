"""A private ovsdb-server per test (in pytest's tmp dir, stopped whatever happens) and store
clients on it.  Marked root like the other tests that run Open vSwitch daemons, though an
ovsdb-server in a tmp dir needs no privilege."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenantvisor.store import EmbeddedServer, Store


@pytest.fixture
def ovsdb_tools() -> None:
    for tool in ("ovsdb-server", "ovsdb-tool", "ovsdb-client", "ovs-appctl"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian: openvswitch-common)")


@pytest.fixture
def server(tmp_path: Path, ovsdb_tools: None) -> Iterator[EmbeddedServer]:
    srv = EmbeddedServer(tmp_path / "state")
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def store(server: EmbeddedServer) -> Iterator[Store]:
    s = Store(server.remote, timeout=5.0)
    try:
        yield s.start()
    finally:
        s.stop()


@pytest.fixture
def other(server: EmbeddedServer) -> Iterator[Store]:
    """A second client of the same database (another instance)."""
    s = Store(server.remote, timeout=5.0)
    try:
        yield s.start()
    finally:
        s.stop()

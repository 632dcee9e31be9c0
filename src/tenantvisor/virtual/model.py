"""Tenant intent: what tenants asked for, as plain data.

This is kept apart from runtime state (sessions, xid maps, installed rules) so it can be
stored, replicated and re-applied; everything the hypervisor programs is derived from it plus
what the pswitches report.  Ids are small integers chosen by the hypervisor (OpenVirteX-style
`tenantId` is our network id), vdpids and vport numbers are what the tenant's controller sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class VPortKind(StrEnum):
    EDGE = "edge"  # a host attaches; the physical port does not face another pswitch
    LINK = "link"  # an end of a vlink; the physical port faces another pswitch


@dataclass
class Tenant:
    id: int
    name: str
    token: str


@dataclass
class VPort:
    """A port of a vswitch, mapped onto one physical port of the vswitch's pswitch."""

    number: int
    dpid: int
    port: int
    kind: VPortKind
    link_id: int | None = None  # set when this link vport is an end of a vlink


@dataclass
class VSwitch:
    """A virtual switch mapped onto one pswitch (big switches come later)."""

    vdpid: int
    dpid: int
    index: int  # fabric-wide id, carried in the metadata bits the hypervisor owns
    ports: dict[int, VPort] = field(default_factory=dict)
    # This vswitch's own controller URLs (e.g. a ptcp: listener of its own); None: the
    # network's.
    controller_urls: list[str] | None = None


@dataclass
class VLinkEnd:
    vdpid: int
    vport: int


@dataclass
class VLink:
    id: int
    src: VLinkEnd
    dst: VLinkEnd


@dataclass
class Host:
    id: int
    vdpid: int
    vport: int
    mac: str  # lower-case colon form, the key together with the physical port


@dataclass
class VirtualNetwork:
    id: int
    tenant_id: int
    controller_urls: list[str]
    network_address: str | None = None
    mask: int | None = None
    scalability: str = "exact"
    started: bool = False
    switches: dict[int, VSwitch] = field(default_factory=dict)  # by vdpid
    links: dict[int, VLink] = field(default_factory=dict)
    hosts: dict[int, Host] = field(default_factory=dict)

    def vport(self, vdpid: int, number: int) -> VPort | None:
        sw = self.switches.get(vdpid)
        return None if sw is None else sw.ports.get(number)

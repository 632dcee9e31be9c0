"""Tenant METER_MOD -> physical METER_MOD, without I/O.

As with groups, a tenant's meter ids map onto physical ids allocated per pswitch.  Bands are
passed on as sent: the pswitch judges rates and band types (OVS's userspace datapath has
drop bands only), and its refusal reaches the tenant with the tenant's own xid.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.openflow import codec
from tenantvisor.openflow.codec import MalformedMessage, OFError

METER_MOD = struct.Struct("!HHI")  # command, flags, meter_id


@dataclass(frozen=True, slots=True)
class MeterMod:
    command: int
    flags: int
    meter_id: int
    bands: bytes

    @classmethod
    def parse(cls, msg: bytes) -> MeterMod:
        if len(msg) < 16:
            raise MalformedMessage("METER_MOD shorter than 16 bytes")
        command, flags, mid = METER_MOD.unpack_from(msg, 8)
        bands = msg[16:]
        list(codec.elements(bands, 2, "meter band"))  # raises on a malformed band
        return cls(command, flags, mid, bands)

    def check_id(self) -> None:
        if not 1 <= self.meter_id <= ofp.OFPM_MAX:
            raise OFError(
                ofp.OFPET_METER_MOD_FAILED,
                ofp.OFPMMFC_INVALID_METER,
                f"meter {self.meter_id:#x}: tenants have meters 1..OFPM_MAX",
            )


def meter_mod(command: int, flags: int, phys_id: int, bands: bytes) -> bytes:
    body = METER_MOD.pack(command, flags, phys_id) + bands
    return codec.header(codec.VERSION, ofp.OFPT_METER_MOD, 0, body)


@dataclass(frozen=True, slots=True)
class LimitMeter:
    """One of the provider's data-plane limit meters of a network (compile/network.py):
    where it is, what it limits (`kind` "vport" with `what` = (vdpid, vport number), or
    "vlink" with `what` = (vlink id, 0 src->dst | 1 dst->src)) and its configuration.
    Its physical id comes from the pswitch's meter space like a tenant's meters, under an
    owner of the network's own, so a tenant never sees it: METER stats and config answer
    with the tenant's meters only."""

    dpid: int
    meter_id: int
    flags: int
    bands: bytes
    kind: str
    what: tuple[int, int]

    def mod(self, command: int) -> bytes:
        """The METER_MOD (xid 0) that adds or modifies it."""
        return meter_mod(command, self.flags, self.meter_id, self.bands)

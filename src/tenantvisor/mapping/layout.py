"""Bit layouts the hypervisor owns on the pswitches: metadata, cookies, fabric tags.

metadata (64 bits), written by the classification table 0:
    63      1 = injected by a PACKET_OUT to output:TABLE (table 0 passes it through)
    62..44  vswitch index (19 bits, fabric-wide)
    43..32  ingress vport (12 bits; 0 = from the controller)
    31..0   the tenant's own metadata
cookie (64 bits) of every physical FR:
    63..48  virtual network id (0 = provider)
    47      1 = hypervisor infrastructure rule of that network, 0 = tenant FR
    46..0   serial of the tenant's virtual FR
"""

VSWITCH_SHIFT = 44
VPORT_SHIFT = 32
MAX_VSWITCH_INDEX = 0x7FFFF
INJECTED = 1 << 63
VSWITCH_MASK = MAX_VSWITCH_INDEX << VSWITCH_SHIFT
VPORT_MASK = 0xFFF << VPORT_SHIFT
HV_META_MASK = INJECTED | VSWITCH_MASK | VPORT_MASK
TENANT_META_MASK = 0xFFFFFFFF

NET_SHIFT = 48
NET_COOKIE_MASK = 0xFFFF << NET_SHIFT
INFRA_BIT = 1 << 47
SERIAL_MASK = INFRA_BIT - 1
ALL_ONES = 0xFFFFFFFFFFFFFFFF

DISCOVERY_COOKIE = INFRA_BIT | 1  # network 0: the provider's own rules
PROVIDER_COOKIE = INFRA_BIT | 2
PUNT_COOKIE = INFRA_BIT | 3  # an unclassified frame from a host port: a host that moved?
# The provider's meter that rate-limits those punts on each pswitch (tenants' physical
# meter ids are allocated below it)
PUNT_METER = 0xFFFF0000  # OFPM_MAX

# Tenant table t lives in physical table t + TABLE_OFFSET; table 0 is classification.
TABLE_OFFSET = 1
# The fabric tag: an 802.1ad S-tag pushed on link vports (see docs/design.md).
FABRIC_TPID = 0x88A8
MAX_TAG = 4094


def vswitch_meta(index: int, vport: int = 0) -> int:
    return (index << VSWITCH_SHIFT) | (vport << VPORT_SHIFT)


def meta_vswitch(meta: int) -> int:
    return (meta & VSWITCH_MASK) >> VSWITCH_SHIFT


def net_cookie(net_id: int) -> int:
    return net_id << NET_SHIFT


def tenant_cookie(net_id: int, serial: int) -> int:
    return (net_id << NET_SHIFT) | (serial & SERIAL_MASK)


def infra_cookie(net_id: int) -> int:
    return (net_id << NET_SHIFT) | INFRA_BIT

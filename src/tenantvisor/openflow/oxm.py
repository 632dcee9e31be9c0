"""OXM field numbers of class OPENFLOW_BASIC (OpenFlow 1.3 spec, 7.2.3.7)."""

IN_PORT = 0
IN_PHY_PORT = 1
METADATA = 2
ETH_DST = 3
ETH_SRC = 4
ETH_TYPE = 5
VLAN_VID = 6
VLAN_PCP = 7
IP_DSCP = 8
IP_ECN = 9
IP_PROTO = 10
IPV4_SRC = 11
IPV4_DST = 12
TCP_SRC = 13
TCP_DST = 14
UDP_SRC = 15
UDP_DST = 16
SCTP_SRC = 17
SCTP_DST = 18
ICMPV4_TYPE = 19
ICMPV4_CODE = 20
ARP_OP = 21
ARP_SPA = 22
ARP_TPA = 23
ARP_SHA = 24
ARP_THA = 25
IPV6_SRC = 26
IPV6_DST = 27
IPV6_FLABEL = 28
ICMPV6_TYPE = 29
ICMPV6_CODE = 30
IPV6_ND_TARGET = 31
IPV6_ND_SLL = 32
IPV6_ND_TLL = 33
MPLS_LABEL = 34
MPLS_TC = 35
MPLS_BOS = 36
PBB_ISID = 37
TUNNEL_ID = 38
IPV6_EXTHDR = 39

# Fields a tenant may match on and set: its own packet headers.  The hypervisor owns in_port
# (rewritten to the virtual port), in_phy_port, the high metadata bits and tunnel_id.
TENANT_SETTABLE = frozenset(range(ETH_DST, PBB_ISID + 1)) | {IPV6_EXTHDR}
TENANT_MATCHABLE = TENANT_SETTABLE | {IN_PORT, METADATA}
VLAN_PRESENT = 0x1000

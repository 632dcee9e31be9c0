"""Every conformance case, the CI subset, and the differences allowed: isolation refusals.

A case in `ALLOWED` passes on a bare Open vSwitch bridge and must fail on a vswitch,
because what it asks would break another tenant's or the hypervisor's isolation; the reason
is what the README's "Conformance" section lists.  Any other difference is a defect.
"""

from __future__ import annotations

from tenantvisor.testbed.conformance import actions, match, messages, pipeline
from tenantvisor.testbed.conformance.harness import Case

_PORT_OUTSIDE = (
    "a port number that is none of the vswitch's vports: it may be another tenant's physical "
    "port, so the vswitch refuses it (BAD_OUT_PORT / BAD_PORT) where OVS accepts any number"
)
_TABLES = (
    "the tenant has 64 tables (physical tables 1-64); a table beyond them is refused "
    "(BAD_TABLE_ID), where OVS has 254"
)

ALLOWED: dict[str, str] = {
    "match/metadata_high_bits": (
        "metadata bits 32-63 carry the vswitch and ingress vport (table 0 writes them): a "
        "tenant may not match them (BAD_VALUE)"
    ),
    "match/tunnel_id": "tunnel_id is the provider's: a tenant may not match it (BAD_FIELD)",
    "set_field/set_tunnel_id": "tunnel_id is the provider's: a tenant may not set it",
    "action/output_local": (
        "LOCAL is the pswitch's own network stack, shared by every tenant (BAD_OUT_PORT)"
    ),
    "action/output_normal": (
        "NORMAL forwards by the pswitch's MAC learning, shared by every tenant "
        "(BAD_OUT_PORT), across tenants' ports"
    ),
    "action/output_absent_port": _PORT_OUTSIDE,
    "packet_out/output_absent_port": _PORT_OUTSIDE,
    "packet_out/in_port_absent": _PORT_OUTSIDE,
    "action/output_table_in_a_rule": (
        "output:TABLE in a rule (the spec allows it in PACKET_OUT only) would resubmit the "
        "packet to the hypervisor's classification table 0 (BAD_OUT_PORT)"
    ),
    "action/push_vlan_8021ad": (
        "an 802.1ad S-tag (TPID 0x88a8) is the fabric tag: a tenant may not push one (BAD_ARGUMENT)"
    ),
    "action/set_queue": (
        "queues belong to the physical port, which tenants share: picking one would take the "
        "provider's QoS classes (BAD_QUEUE)"
    ),
    "instruction/goto_table_100": _TABLES,
    "instruction/rule_in_table_200": _TABLES,
    "stats/flow_table_200": _TABLES,
}


def all_cases() -> list[Case]:
    cases = [*match.cases(), *actions.cases(), *pipeline.cases(), *messages.cases()]
    names = [c.name for c in cases]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"conformance cases named twice: {sorted(dup)}")
    unknown = set(ALLOWED) - set(names)
    if unknown:
        raise ValueError(f"allowed differences name no case: {sorted(unknown)}")
    return cases


def ci_cases() -> list[Case]:
    """The bounded subset the tests run: every kind of case, no slow one."""
    return [c for c in all_cases() if c.ci and not c.slow]


__all__ = ["ALLOWED", "all_cases", "ci_cases"]

"""Dedicated network bridges (DNB): per-tenant-network bridge pairs on OVS compute nodes.

intent (`model`) -> desired per-node state (`planner`, pure) -> OVSDB transactions
(`ovsdb`), provider OpenFlow rules (`flows`) and node-local steps OVSDB cannot do (`agent`),
applied by `manager` one node step at a time with rollback.
"""

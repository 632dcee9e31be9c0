"""A vswitch's flow table as its tenant installed it: the source of truth for physical FRs.

FLOW_MOD semantics (add / modify / delete, strict or not, cookie masks, out_port and
out_group filters, overlap checks) are applied here on the tenant's view; each entry keeps
the physical rules it was translated into, so a change or a remap updates exactly those.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.openflow import codec
from tenantvisor.openflow.codec import FlowMod, OFError, Oxm
from tenantvisor.translate.flow import PhysFlow

_FULL = {1: 0xFF, 2: 0xFFFF, 3: 0xFFFFFF, 4: 0xFFFFFFFF, 6: (1 << 48) - 1, 8: (1 << 64) - 1}


def _full(n: int) -> int:
    return _FULL.get(n) or (1 << (8 * n)) - 1


def normalize(match: list[Oxm]) -> tuple[tuple[tuple[int, int], int, int, int], ...]:
    """Canonical form: ((class, field), value, mask, length) sorted.

    An all-zero mask matches anything, which the spec makes the same match as leaving the
    field out (OF1.3.5 7.2.3.5), so such fields are dropped.
    """
    out = []
    for o in match:
        n = len(o.value)
        full = _full(n)
        mask = full if o.mask is None else int.from_bytes(o.mask, "big")
        if not mask:
            continue
        out.append((o.key, int.from_bytes(o.value, "big") & mask, mask, n))
    out.sort()
    return tuple(out)


NormMatch = tuple[tuple[tuple[int, int], int, int, int], ...]


def covers(request: NormMatch, entry: NormMatch) -> bool:
    """True when every packet matching `entry` matches `request` (non-strict selection)."""
    fields = {k: (v, m) for k, v, m, _ in entry}
    for k, rv, rm, _ in request:
        got = fields.get(k)
        if got is None:
            if rm:
                return False
            continue
        ev, em = got
        if em & rm != rm or ev & rm != rv & rm:
            return False
    return True


def overlaps(a: NormMatch, b: NormMatch) -> bool:
    """True when some packet could match both."""
    fb = {k: (v, m) for k, v, m, _ in b}
    for k, av, am, _ in a:
        got = fb.get(k)
        if got is not None:
            bv, bm = got
            common = am & bm
            if av & common != bv & common:
                return False
    return True


@dataclass(slots=True)
class VFlow:
    serial: int
    table: int
    priority: int
    match: list[Oxm]
    norm: NormMatch
    instructions: bytes  # as the tenant sent them
    cookie: int
    idle_timeout: int
    hard_timeout: int
    flags: int
    phys: tuple[PhysFlow, ...] = ()
    created: float = field(default_factory=time.monotonic)  # for the duration in stats

    @property
    def is_table_miss(self) -> bool:
        return self.priority == 0 and not self.norm

    def uses_group(self, gid: int) -> bool:
        return self.sends_to(ofp.OFPP_ANY, gid)

    def outputs_to(self, port: int) -> bool:
        return self.sends_to(port, ofp.OFPG_ANY)

    def sends_to(self, out_port: int, out_group: int) -> bool:
        """Whether the rule passes a DELETE's or a statistics request's out_port and
        out_group filters (OF1.3.5 6.4, 7.3.5.2): an output to `out_port` and a group
        action to `out_group` among the actions of its own instructions, apply or write
        (not those of the groups it uses).  OFPP_ANY / OFPG_ANY: no condition."""
        port_ok, group_ok = out_port == ofp.OFPP_ANY, out_group == ofp.OFPG_ANY
        if port_ok and group_ok:
            return True
        ins = codec.parse_instructions(self.instructions)
        for acts in (ins.apply_actions or [], ins.write_actions or []):
            for a in acts:
                if a.type == ofp.OFPAT_OUTPUT:
                    port_ok = port_ok or a.output_port == out_port
                elif a.type == ofp.OFPAT_GROUP:
                    group_ok = group_ok or codec.u32(a.raw, 4) == out_group
        return port_ok and group_ok


class VirtualFlowTable:
    def __init__(self) -> None:
        self._entries: dict[tuple[int, int, NormMatch], VFlow] = {}
        self.by_serial: dict[int, VFlow] = {}
        self._next_serial = 1
        # with a store: rules changed since it last took them (serial -> rule, None: gone)
        self.changed: dict[int, VFlow | None] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[VFlow]:
        return iter(list(self._entries.values()))

    def new_serial(self) -> int:
        s = self._next_serial
        self._next_serial += 1
        return s

    def get(self, table: int, priority: int, norm: NormMatch) -> VFlow | None:
        return self._entries.get((table, priority, norm))

    def check_overlap(self, fm: FlowMod, norm: NormMatch) -> None:
        for e in self._entries.values():
            if (
                e.table == fm.table_id
                and e.priority == fm.priority
                and e.norm != norm
                and overlaps(e.norm, norm)
            ):
                raise OFError(ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_OVERLAP, "overlapping rule")

    def put(self, vf: VFlow) -> VFlow | None:
        """Insert; return the entry it replaced (same table, priority and match)."""
        key = (vf.table, vf.priority, vf.norm)
        old = self._entries.get(key)
        if old is not None:
            del self.by_serial[old.serial]
        self._entries[key] = vf
        self.by_serial[vf.serial] = vf
        if self.changed is not None:
            if old is not None:
                self.changed[old.serial] = None
            self.changed[vf.serial] = vf
        return old

    def touch(self, vf: VFlow) -> None:
        """`vf` changed in place (MODIFY): the store must take it again."""
        if self.changed is not None and self.by_serial.get(vf.serial) is vf:
            self.changed[vf.serial] = vf

    def restore(self, flows: list[VFlow]) -> None:
        """Rules read back from the store: their serials (and so their cookies) are kept."""
        for vf in flows:
            self._entries[(vf.table, vf.priority, vf.norm)] = vf
            self.by_serial[vf.serial] = vf
        self._next_serial = max([self._next_serial, *(vf.serial + 1 for vf in flows)])

    def remove(self, vf: VFlow) -> None:
        key = (vf.table, vf.priority, vf.norm)
        if self._entries.get(key) is vf:
            del self._entries[key]
            self.by_serial.pop(vf.serial, None)
            if self.changed is not None:
                self.changed[vf.serial] = None

    def select(self, fm: FlowMod, norm: NormMatch, strict: bool, filter_out: bool) -> list[VFlow]:
        """Entries a MODIFY/DELETE (strict or not) applies to."""
        out = []
        cmask = fm.cookie_mask
        for e in self._entries.values():
            if fm.table_id != ofp.OFPTT_ALL and e.table != fm.table_id:
                continue
            if cmask and (e.cookie & cmask) != (fm.cookie & cmask):
                continue
            if strict:
                if e.priority != fm.priority or e.norm != norm:
                    continue
            elif not covers(norm, e.norm):
                continue
            if filter_out and not e.sends_to(fm.out_port, fm.out_group):
                continue
            out.append(e)
        return out

    def select_stats(
        self, table_id: int, out_port: int, out_group: int, cookie: int, cookie_mask: int,
        norm: NormMatch,
    ) -> list[VFlow]:  # fmt: skip
        """Rules a FLOW/AGGREGATE statistics request names (non-strict, like a delete)."""
        out = []
        for e in self._entries.values():
            if table_id != ofp.OFPTT_ALL and e.table != table_id:
                continue
            if cookie_mask and (e.cookie & cookie_mask) != (cookie & cookie_mask):
                continue
            if not covers(norm, e.norm):
                continue
            if not e.sends_to(out_port, out_group):
                continue
            out.append(e)
        return out

    def clear(self) -> list[VFlow]:
        gone = list(self._entries.values())
        self._entries.clear()
        self.by_serial.clear()
        if self.changed is not None:
            self.changed.update((vf.serial, None) for vf in gone)
        return gone

    def take_changes(self) -> dict[int, VFlow | None]:
        """What changed since the last call (and start tracking if not yet)."""
        got, self.changed = self.changed or {}, {}
        return got

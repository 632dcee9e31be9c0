"""Ids that reach the wire, behind one small interface: fabric tags per physical port, group
and meter ids and OpenFlow 1.0 marker VLANs per pswitch.

Allocation is deterministic (the lowest free id of the space) and keyed by an owner that
names what the id stands for, so the same intent compiled twice gets the same ids, and the
whole table is plain data (`snapshot`) that a store can persist and give back (`restore`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

Space = tuple[Hashable, ...]  # e.g. ("tag", dpid, port), ("group", dpid), ("marker", dpid)
LOST_KEEP = 4096  # owners that lost their ids, remembered for `lost_since`


class IdSpaceExhausted(Exception):
    pass


def tenant_owner(net_id: int, vdpid: int, kind: str, tenant_id: int) -> Hashable:
    """The owner of the physical id standing for a tenant's group or meter: it names the
    network, so the id is that network's owner's to give back (several instances)."""
    return ("tenant", net_id, vdpid, kind, tenant_id)


def owner_network(owner: Hashable) -> int | None:
    """The virtual network an allocation belongs to: compiled ids have owners that start
    with the network id, tenants' group and meter ids `tenant_owner`'s; None for others."""
    if isinstance(owner, tuple) and owner:
        first = owner[1] if owner[0] == "tenant" and len(owner) > 2 else owner[0]
        if isinstance(first, int) and not isinstance(first, bool) and 1 <= first <= 0xFFFF:
            return first
    return None


class IdAllocator:
    def __init__(self) -> None:
        self._used: dict[Space, dict[int, Hashable]] = {}
        self._held: dict[tuple[Space, Hashable], int] = {}
        # what changed since the store last took it: (space, owner) -> id, or None if freed
        self.journal: dict[tuple[Space, Hashable], int | None] | None = None
        # ids handed out since `take_fresh`, once it was called (several instances: reserved
        # in the store before they reach the wire)
        self.fresh: list[tuple[Space, Hashable, int]] | None = None
        # (space, owner) of ids given back or taken away, in order, the oldest dropped
        # first: whoever kept ids found earlier can tell whether they still hold
        self._lost: list[tuple[Space, Hashable]] = []
        self._lost_base = 0  # how many were dropped from the front

    def get(self, space: Space, owner: Hashable, lo: int = 1, hi: int = 4094) -> int:
        """The id `owner` holds in `space`, allocating the lowest free one if it has none."""
        held = self._held.get((space, owner))
        if held is not None:
            return held
        used = self._used.setdefault(space, {})
        for i in range(lo, hi + 1):
            if i not in used:
                self._take(space, owner, i)
                return i
        raise IdSpaceExhausted(f"no free id left in {space!r}")

    def get_block(self, space: Space, owner: tuple[Hashable, ...], size: int,
                  hi: int = 4094) -> int:  # fmt: skip
        """The base of an aligned block of `size` ids (a power of two) that `owner` holds in
        `space`, allocating the lowest free one if it has none: id `base + k` is held by
        `(*owner, k)`, so one masked match covers the block and each id is still plain data
        to persist and reserve.  Never the block at 0 (VLAN id 0 is no tag)."""
        assert size >= 2 and size & (size - 1) == 0
        held = self._held.get((space, (*owner, 0)))
        if held is not None:
            return held
        used = self._used.setdefault(space, {})
        for base in range(size, hi - size + 2, size):
            if any(base + k in used for k in range(size)):
                continue
            for k in range(size):
                self._take(space, (*owner, k), base + k)
            return base
        raise IdSpaceExhausted(f"no free block of {size} ids left in {space!r}")

    def _take(self, space: Space, owner: Hashable, i: int) -> None:
        self._used.setdefault(space, {})[i] = owner
        self._held[(space, owner)] = i
        if self.journal is not None:
            self.journal[(space, owner)] = i
        if self.fresh is not None:
            self.fresh.append((space, owner, i))

    def peek(self, space: Space, owner: Hashable) -> int | None:
        return self._held.get((space, owner))

    @property
    def lost_mark(self) -> int:
        """A mark to ask `lost_since` from."""
        return self._lost_base + len(self._lost)

    def lost_since(self, mark: int) -> list[tuple[Space, Hashable]] | None:
        """The owners whose ids went (given back, or displaced) since `mark`; None: too
        long ago to say (check every id)."""
        if mark < self._lost_base:
            return None
        return self._lost[mark - self._lost_base :]

    def _lose(self, space: Space, owner: Hashable) -> None:
        self._lost.append((space, owner))
        if len(self._lost) > LOST_KEEP:
            cut = len(self._lost) // 2
            del self._lost[:cut]
            self._lost_base += cut

    def owner_of(self, space: Space, i: int) -> Hashable | None:
        return self._used.get(space, {}).get(i)

    def take_fresh(self) -> list[tuple[Space, Hashable, int]]:
        """Ids handed out since the last call (and start keeping them if not yet)."""
        got, self.fresh = self.fresh or [], []
        return got

    def hold_foreign(self, space: Space, owner: Hashable, i: int) -> None:
        """Another instance holds `i` in `space` for `owner`: never hand it out here.  An id
        of ours it displaces (a race the store decided against us) is dropped, unjournaled:
        the store has the other's row."""
        mine = self._used.get(space, {}).get(i)
        if mine is not None and mine != owner:
            self._held.pop((space, mine), None)
            self._lose(space, mine)
        old = self._held.get((space, owner))
        if old is not None and old != i:
            self._used.get(space, {}).pop(old, None)
            self._lose(space, owner)
        self._used.setdefault(space, {})[i] = owner
        self._held[(space, owner)] = i

    def sync_foreign(
        self, rows: list[tuple[Space, Hashable, int]], ours: Callable[[Hashable], bool]
    ) -> None:
        """The store's allocations: those of owners not `ours` become (or stay) foreign,
        foreign ones the store no longer has are forgotten.  Ours are left as they are (this
        instance is their only writer)."""
        seen = set()
        for space, owner, i in rows:
            if ours(owner):
                continue
            seen.add((space, owner))
            if self._held.get((space, owner)) != i:
                self.hold_foreign(space, owner, i)
        for key in [k for k in self._held if not ours(k[1]) and k not in seen]:
            space, owner = key
            i = self._held.pop(key)
            self._lose(space, owner)
            if self._used.get(space, {}).get(i) == owner:
                del self._used[space][i]

    def release(self, space: Space, owner: Hashable) -> None:
        i = self._held.pop((space, owner), None)
        if i is not None:
            self._used.get(space, {}).pop(i, None)
            self._lose(space, owner)
            if self.journal is not None:
                self.journal[(space, owner)] = None

    def release_id(self, space: Space, i: int) -> None:
        owner = self._used.get(space, {}).pop(i, None)
        if owner is not None:
            self._held.pop((space, owner), None)
            self._lose(space, owner)
            if self.journal is not None:
                self.journal[(space, owner)] = None

    def release_where(self, pred: Callable[[Space, Hashable], bool]) -> None:
        for space, owner in [k for k in self._held if pred(*k)]:
            self.release(space, owner)

    def take_journal(self) -> dict[tuple[Space, Hashable], int | None]:
        """What changed since the last call (and start journaling if not yet)."""
        got, self.journal = self.journal or {}, {}
        return got

    def snapshot(self) -> list[tuple[Space, Hashable, int]]:
        """Every allocation, sorted: what a store keeps."""
        return sorted(((s, o, i) for (s, o), i in self._held.items()), key=repr)

    def restore(self, rows: list[tuple[Space, Hashable, int]]) -> None:
        self._lost_base, self._lost = self.lost_mark + 1, []  # anything may have changed
        for space, owner, i in rows:
            self._used.setdefault(space, {})[i] = owner
            self._held[(space, owner)] = i

    def __len__(self) -> int:
        return len(self._held)

"""Ids that reach the wire, behind one small interface: fabric tags per physical port, group
and meter ids and OpenFlow 1.0 marker VLANs per pswitch.

Allocation is deterministic (the lowest free id of the space) and keyed by an owner that
names what the id stands for, so the same intent compiled twice gets the same ids, and the
whole table is plain data (`snapshot`) that a store can persist and give back (`restore`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

Space = tuple[Hashable, ...]  # e.g. ("tag", dpid, port), ("group", dpid), ("marker", dpid)


class IdSpaceExhausted(Exception):
    pass


class IdAllocator:
    def __init__(self) -> None:
        self._used: dict[Space, dict[int, Hashable]] = {}
        self._held: dict[tuple[Space, Hashable], int] = {}
        # what changed since the store last took it: (space, owner) -> id, or None if freed
        self.journal: dict[tuple[Space, Hashable], int | None] | None = None

    def get(self, space: Space, owner: Hashable, lo: int = 1, hi: int = 4094) -> int:
        """The id `owner` holds in `space`, allocating the lowest free one if it has none."""
        held = self._held.get((space, owner))
        if held is not None:
            return held
        used = self._used.setdefault(space, {})
        for i in range(lo, hi + 1):
            if i not in used:
                used[i] = owner
                self._held[(space, owner)] = i
                if self.journal is not None:
                    self.journal[(space, owner)] = i
                return i
        raise IdSpaceExhausted(f"no free id left in {space!r}")

    def peek(self, space: Space, owner: Hashable) -> int | None:
        return self._held.get((space, owner))

    def release(self, space: Space, owner: Hashable) -> None:
        i = self._held.pop((space, owner), None)
        if i is not None:
            self._used.get(space, {}).pop(i, None)
            if self.journal is not None:
                self.journal[(space, owner)] = None

    def release_id(self, space: Space, i: int) -> None:
        owner = self._used.get(space, {}).pop(i, None)
        if owner is not None:
            self._held.pop((space, owner), None)
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
        for space, owner, i in rows:
            self._used.setdefault(space, {})[i] = owner
            self._held[(space, owner)] = i

    def __len__(self) -> int:
        return len(self._held)

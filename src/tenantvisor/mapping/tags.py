"""Fabric tag allocation.

A tag only has to be unique on the physical port where a rule matches it, so each hop of a
vlink path gets a tag from the space of the port it enters (label switching, as MPLS does):
every physical port offers 4094 tags instead of the whole fabric sharing 4094.
"""

from __future__ import annotations

from collections.abc import Hashable

from tenantvisor.mapping.layout import MAX_TAG


class TagSpaceExhausted(Exception):
    pass


class TagAllocator:
    def __init__(self) -> None:
        self._by_port: dict[tuple[int, int], dict[int, Hashable]] = {}
        self._by_owner: dict[Hashable, tuple[tuple[int, int], int]] = {}

    def get(self, port: tuple[int, int], owner: Hashable) -> int:
        """The tag of `owner` on `port`, allocating one if needed (stable across calls)."""
        held = self._by_owner.get(owner)
        if held is not None:
            if held[0] == port:
                return held[1]
            self.release(owner)
        used = self._by_port.setdefault(port, {})
        for tag in range(1, MAX_TAG + 1):
            if tag not in used:
                used[tag] = owner
                self._by_owner[owner] = (port, tag)
                return tag
        raise TagSpaceExhausted(f"no free fabric tag on port {port[1]} of {port[0]:#x}")

    def release(self, owner: Hashable) -> None:
        held = self._by_owner.pop(owner, None)
        if held is not None:
            self._by_port.get(held[0], {}).pop(held[1], None)

    def release_where(self, pred: object) -> None:
        """Release every owner for which pred(owner) is true."""
        assert callable(pred)
        for owner in [o for o in self._by_owner if pred(o)]:
            self.release(owner)

    def owners(self) -> list[Hashable]:
        return list(self._by_owner)

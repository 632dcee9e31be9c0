"""Fabric tags per physical port, by owner: a view of `IdAllocator`'s ("tag", dpid, port)
spaces for code that names an owner and a port (tools, tests).

A tag only has to be unique on the physical port where a rule matches it, so each hop of a
path gets a tag from the space of the port it enters (label switching, as MPLS does): every
physical port offers 4094 tags instead of the whole fabric sharing 4094.  An owner holds one
tag at a time: asking on another port gives back the old one.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from tenantvisor.mapping.alloc import IdAllocator, IdSpaceExhausted
from tenantvisor.mapping.layout import MAX_TAG


class TagSpaceExhausted(IdSpaceExhausted):
    pass


class TagAllocator:
    def __init__(self, alloc: IdAllocator | None = None) -> None:
        self._alloc = alloc if alloc is not None else IdAllocator()
        self._port: dict[Hashable, tuple[int, int]] = {}  # owner -> the port it holds on

    def get(self, port: tuple[int, int], owner: Hashable) -> int:
        """The tag of `owner` on `port`, allocating one if needed (stable across calls)."""
        held = self._port.get(owner)
        if held is not None and held != port:
            self.release(owner)
        try:
            tag = self._alloc.get(("tag", *port), owner, 1, MAX_TAG)
        except IdSpaceExhausted:
            raise TagSpaceExhausted(
                f"no free fabric tag on port {port[1]} of {port[0]:#x}"
            ) from None
        self._port[owner] = port
        return tag

    def release(self, owner: Hashable) -> None:
        port = self._port.pop(owner, None)
        if port is not None:
            self._alloc.release(("tag", *port), owner)

    def release_where(self, pred: Callable[[Hashable], bool]) -> None:
        """Release every owner for which pred(owner) is true."""
        for owner in [o for o in self._port if pred(o)]:
            self.release(owner)

    def owners(self) -> list[Hashable]:
        return list(self._port)

"""Which virtual rules stand behind each physical rule of one vswitch.

Two tenant rules of one vswitch can translate to the same physical rule: a rule that does not
pin in_port expands per ingress vport, and one expansion can equal another rule that pins
that ingress at the same priority.  OpenFlow leaves which of two such rules a packet hits
undefined, but removing one must leave the other in force.  So each physical key keeps its
owners; the installed rule is always the latest owner's, and when an owner goes, the next
one is re-installed (or the rule deleted when none is left).
"""

from __future__ import annotations

from tenantvisor.translate.flow import PhysFlow

Key = tuple[int, int, int, bytes]


class PhysRuleMap:
    def __init__(self) -> None:
        self._owners: dict[Key, dict[int, PhysFlow]] = {}  # insertion order: last = installed

    def __len__(self) -> int:
        return len(self._owners)

    def installed(self) -> list[PhysFlow]:
        """The rule each physical key carries now (what a fresh pswitch must get)."""
        return [next(reversed(o.values())) for o in self._owners.values()]

    def installed_for(self, key: Key) -> PhysFlow | None:
        """The rule the key carries now (None: none)."""
        owners = self._owners.get(key)
        return next(reversed(owners.values())) if owners else None

    def add(self, serial: int, pf: PhysFlow) -> bool:
        """`serial` wants `pf`; True when it was already the installed owner of that key."""
        owners = self._owners.setdefault(pf.key, {})
        was_top = bool(owners) and next(reversed(owners)) == serial
        owners.pop(serial, None)
        owners[serial] = pf
        return was_top

    def add_fallback(self, serial: int, pf: PhysFlow) -> bool:
        """`serial` wants `pf` only where no one else does (lowest precedence); True when it
        is now the installed owner (the key had none)."""
        owners = self._owners.get(pf.key, {})
        owners.pop(serial, None)
        self._owners[pf.key] = {serial: pf, **owners}
        return len(self._owners[pf.key]) == 1

    def remove(self, serial: int, pf: PhysFlow) -> PhysFlow | None:
        """`serial` no longer wants `pf`'s key.  Returns the rule to install in its place,
        or None; `pf` itself when the key has no owner left and must be deleted."""
        owners = self._owners.get(pf.key)
        if owners is None or serial not in owners:
            return None
        was_top = next(reversed(owners)) == serial
        del owners[serial]
        if not owners:
            del self._owners[pf.key]
            return pf
        return next(reversed(owners.values())) if was_top else None

    def owners(self, key: Key) -> list[int]:
        return list(self._owners.get(key, {}))

    def clear(self) -> list[PhysFlow]:
        gone = self.installed()
        self._owners.clear()
        return gone

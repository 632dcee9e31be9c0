"""Datapath ids and MACs as people type them and as OpenVirteX prints them.

Kept free of web dependencies so `tvctl` can parse its arguments exactly as the API does
without importing FastAPI.  Operators copy dpids from `ovs-ofctl show` (hex), from OVX
(`00:a4:23:05:00:00:00:01`) or from our own JSON (decimal); all three must mean the same switch.
"""

from __future__ import annotations

DPID_LIMIT = 1 << 64


def parse_dpid(value: object, what: str = "dpid") -> int:
    """Return the integer for a dpid given as int, decimal, 0x-hex or colon hex; raise ValueError.

    Colon hex is read as hexadecimal even without colons only when it contains one, so "10"
    stays decimal ten as the API's JSON would carry it.  Booleans are refused: JSON `true` is
    a client bug, never a switch.
    """
    if isinstance(value, bool):
        raise ValueError(f"{what} {value!r} is not a datapath id")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        text = value.strip().lower()
        try:
            if ":" in text:
                parts = text.split(":")
                if not all(1 <= len(p) <= 2 for p in parts) or len(parts) > 8:
                    raise ValueError
                number = int("".join(p.zfill(2) for p in parts), 16)
            elif text.startswith("0x"):
                number = int(text[2:], 16)
            else:
                if not text.isdigit():
                    raise ValueError
                number = int(text, 10)
        except ValueError:
            raise ValueError(
                f"{what} {value!r} is not a datapath id (decimal, 0x-hex or colon hex)"
            ) from None
    else:
        raise ValueError(f"{what} {value!r} is not a datapath id")
    if not 0 <= number < DPID_LIMIT:
        raise ValueError(f"{what} {value!r} is out of range (64 bits)")
    return number


def dpid_str(dpid: int) -> str:
    """Colon hex, eight bytes, lower case: how OpenVirteX (and Floodlight) name switches."""
    text = f"{dpid:016x}"
    return ":".join(text[i : i + 2] for i in range(0, 16, 2))


def mac_to_int(mac: str) -> int:
    """aa:bb:cc:dd:ee:ff -> integer, the form OVX replies carry (Host.getDBObject)."""
    return int(mac.replace(":", ""), 16)


def ip_to_int(address: str | None) -> int | None:
    """Dotted IPv4 -> unsigned integer, as OVX replies carry `networkAddress`."""
    if address is None:
        return None
    a, b, c, d = (int(x) for x in address.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d

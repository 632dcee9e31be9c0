"""Controller URLs in Open vSwitch's syntax: `tcp:IP:PORT` (we connect) or `ptcp:PORT[:IP]`."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from tenantvisor.errors import InvalidRequest


@dataclass(frozen=True)
class ControllerUrl:
    active: bool  # True: tcp (the vswitch connects out); False: ptcp (the vswitch listens)
    host: str
    port: int

    def __str__(self) -> str:
        return f"tcp:{self.host}:{self.port}" if self.active else f"ptcp:{self.port}:{self.host}"


def parse_controller_url(url: str) -> ControllerUrl:
    """Parse and check one URL; raise InvalidRequest naming what is wrong."""
    if not isinstance(url, str) or not url:
        raise InvalidRequest(f"controller URL {url!r}: expected tcp:IP:PORT or ptcp:PORT[:IP]")
    scheme, _, rest = url.partition(":")
    if scheme == "tcp":
        host, sep, port_s = rest.rpartition(":")
        if not sep or not host:
            raise InvalidRequest(f"controller URL {url!r}: expected tcp:IP:PORT")
    elif scheme == "ptcp":
        port_s, sep, host = rest.partition(":")
        host = host or "0.0.0.0"
    else:
        raise InvalidRequest(f"controller URL {url!r}: scheme must be tcp or ptcp")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise InvalidRequest(f"controller URL {url!r}: {host!r} is not an IP address") from None
    if not (port_s.isascii() and port_s.isdigit()) or not 0 < int(port_s) < 65536:
        raise InvalidRequest(f"controller URL {url!r}: port must be 1-65535") from None
    return ControllerUrl(scheme == "tcp", host, int(port_s))

"""The ``[metrics] address`` value: ``PORT``, ``:PORT``, ``HOST:PORT`` or ``[IPv6]:PORT``.

Parsed here, in the configuration layer, so that checking a configuration file does not load the
metrics service; :mod:`framewatch.daemon.service.metrics` uses the same function to bind.
"""
from __future__ import annotations

import ipaddress

from framewatch.core.errors import SettingsError

DEFAULT_HOST = "127.0.0.1"


def parse_address(text: str) -> tuple[str, int]:
    """``"PORT"``, ``":PORT"``, ``"HOST:PORT"`` or ``"[IPv6]:PORT"`` → (host, port); the host
    defaults to 127.0.0.1. Raises SettingsError naming ``[metrics] address``."""
    s = str(text).strip()
    host, port_s = DEFAULT_HOST, s
    if s.startswith("["):
        end = s.find("]")
        if end < 0 or not s[end + 1 :].startswith(":"):
            raise SettingsError(f"[metrics] address {text!r} is not [IPv6]:PORT", fix='e.g. address = "[::1]:9750"')
        host, port_s = s[1:end], s[end + 2 :]
    elif ":" in s:
        host, port_s = s.rsplit(":", 1)
        host = host or DEFAULT_HOST
    try:
        port = int(port_s)
    except ValueError:
        raise SettingsError(f"[metrics] address {text!r} has no valid port", fix='e.g. address = "127.0.0.1:9750"') from None
    if not 0 <= port <= 65535:
        raise SettingsError(f"[metrics] address {text!r}: port {port} is outside 0-65535")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise SettingsError(f"[metrics] address {text!r}: {host!r} is not an IP address",
                                fix="give 127.0.0.1 (this machine only), 0.0.0.0 (every interface) "
                                    "or an address of this machine") from None
    return host, port

"""The systemd notification protocol (``sd_notify``), standard library only.

Under ``Type=notify`` systemd passes the path of a datagram socket in ``NOTIFY_SOCKET``; the
service sends newline-separated ``KEY=VALUE`` assignments to it:

- ``READY=1``: start-up is finished (configuration valid, directories writable, kernels compiled);
- ``STATUS=...``: one line shown by ``systemctl status``;
- ``WATCHDOG=1``: "still healthy"; with ``WatchdogSec=`` set, systemd kills and (with
  ``Restart=on-failure``) restarts a service that stops sending it for that long;
- ``RELOADING=1`` + ``MONOTONIC_USEC=...``: a configuration reload started (then ``READY=1``);
- ``STOPPING=1``: shutdown started.

The socket is a file system path, or an abstract socket name when it starts with ``@`` (the ``@``
stands for the leading NUL byte). Without ``NOTIFY_SOCKET`` (not run by systemd, or not
``Type=notify``) every call does nothing and returns False. A failed send is not an error of the
service: it is returned (False) and the reason kept in :attr:`Notifier.last_error`, so the caller
can log it once rather than swallow it.

``WATCHDOG_USEC`` (and ``WATCHDOG_PID``, when set, naming the process meant) give the watchdog
interval; :func:`watchdog_interval_s` parses it and the service pings at half that period.
"""
from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

__all__ = ["Notifier", "notify", "socket_address", "watchdog_interval_s"]


def socket_address(value: str | None) -> str | bytes | None:
    """The address to send to for a ``NOTIFY_SOCKET`` value (``@name`` → abstract ``b"\\0name"``),
    or None when it is unset, empty or not a Unix socket (``vsock:`` addresses are not supported)."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def watchdog_interval_s(env: Mapping[str, str] | None = None, *, pid: int | None = None) -> float | None:
    """The watchdog period systemd expects pings within, in seconds, or None when there is none.

    ``WATCHDOG_USEC`` is a positive integer of microseconds; when ``WATCHDOG_PID`` is set and is
    not this process's pid, the watchdog is meant for another process (e.g. a wrapper) and this
    returns None. Malformed values give None, as in ``sd_watchdog_enabled``.
    """
    env = os.environ if env is None else env
    raw = env.get("WATCHDOG_USEC")
    if not raw:
        return None
    try:
        usec = int(raw)
    except ValueError:
        return None
    if usec <= 0:
        return None
    want_pid = env.get("WATCHDOG_PID")
    if want_pid:
        try:
            if int(want_pid) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            return None
    return usec / 1e6


def notify(message: str, *, env: Mapping[str, str] | None = None) -> bool:
    """Send ``message`` (e.g. ``"READY=1\\nSTATUS=idle"``) to ``$NOTIFY_SOCKET``; True when sent."""
    n = Notifier(env)
    return n.send(message)


class Notifier:
    """A sender bound to the ``NOTIFY_SOCKET`` seen at construction (a fresh socket per message,
    as systemd's own self-contained example does, so nothing is held open between messages)."""

    def __init__(self, env: Mapping[str, str] | None = None):
        env = os.environ if env is None else env
        self.socket_value = env.get("NOTIFY_SOCKET") or None
        self.address = socket_address(self.socket_value)
        self.watchdog_s = watchdog_interval_s(env)
        self.last_error: str | None = None
        if self.socket_value and self.address is None:
            self.last_error = f"NOTIFY_SOCKET={self.socket_value!r} is not a Unix socket path or @abstract name"
        self._last_status: str | None = None
        self._last_watchdog = 0.0

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, message: str) -> bool:
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall(message.encode())
        except OSError as err:
            self.last_error = f"cannot notify {self.socket_value}: {err}"
            return False
        return True

    # --- the messages framewatch sends ------------------------------------------------------
    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))

    def status(self, text: str, *, force: bool = False) -> bool:
        """Send ``STATUS=text`` unless it is the same as the last one sent (or ``force``)."""
        text = _one_line(text)
        if text == self._last_status and not force:
            return False
        ok = self.send(f"STATUS={text}")
        if ok:
            self._last_status = text
        return ok

    def watchdog(self, *, now: float | None = None) -> bool:
        """Send ``WATCHDOG=1`` when half the watchdog period has passed since the last ping.
        Nothing is sent when systemd set no watchdog (no ``WATCHDOG_USEC`` for this process)."""
        if self.address is None or self.watchdog_s is None:
            return False
        now = time.monotonic() if now is None else now
        if now - self._last_watchdog < self.watchdog_s / 2:
            return False
        ok = self.send("WATCHDOG=1")
        if ok:
            self._last_watchdog = now
        return ok

    def reloading(self) -> bool:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))


def _one_line(text: str) -> str:
    return " ".join(str(text).split())

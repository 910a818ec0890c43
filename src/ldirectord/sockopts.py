"""Socket options shared by the daemon's sockets (no IO beyond setsockopt)."""

from __future__ import annotations

import socket

_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


def raise_rcvbuf(sock: socket.socket, size: int) -> None:
    """Ask for a receive buffer of ``size`` bytes: beyond net.core.rmem_max when we may
    (SO_RCVBUFFORCE needs CAP_NET_ADMIN), else up to it. Raises OSError when neither works."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)

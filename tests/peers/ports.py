"""Free TCP ports on loopback for the test peers."""

from __future__ import annotations

import socket


def free_ports(host: str, count: int) -> list[int]:
    """Return ``count`` distinct ports on ``host`` that were free a moment ago.

    The sockets are held together while the kernel picks, so the ports differ from each
    other. Another process may still take one before the peer binds it: peers retry with
    fresh ports when their bind fails.
    """
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()

"""HTTP to a scorer at its address: `unix:/path/to/scorer.sock` (stepwise/scoring.py), or
`host:port` as scorers were reached before they moved to Unix sockets."""

from __future__ import annotations

import http.client
import os
import socket

# A socket's name holds 108 bytes with its terminator; a longer path is reached through its folder.
SUN_PATH_MAX = 107


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            if len(os.fsencode(self.socket_path)) <= SUN_PATH_MAX:
                sock.connect(self.socket_path)
            else:
                folder, name = os.path.split(self.socket_path)
                fd = os.open(folder, os.O_PATH | os.O_CLOEXEC)
                try:
                    sock.connect(f"/proc/self/fd/{fd}/{name}")
                finally:
                    os.close(fd)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def connection(address: str, *, timeout: float) -> http.client.HTTPConnection:
    """A connection to the scorer at `address`; ValueError for an address that names none."""
    if address.startswith("unix:/"):
        return _UnixConnection(address.removeprefix("unix:"), timeout)
    host, _, port = address.rpartition(":")
    return http.client.HTTPConnection(host, int(port), timeout=timeout)

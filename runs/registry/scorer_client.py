"""HTTP to a scorer at its address: `unix:/path/to/scorer.sock` (stepwise/scoring.py), or
`host:port` as scorers were reached before they moved to Unix sockets."""

from __future__ import annotations

import http.client
import os
import socket
import stat

# A socket's name holds 108 bytes with its terminator: sockets are reached through a handle (see connect).
SUN_PATH_MAX = 107


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            # The socket lies in the scorer's own folder, where its model's code may have put a link
            # in its place (to another team's scorer, or any socket of this host): connect() follows
            # links, so the socket is opened without following one and reached through that handle,
            # which also keeps a long path within the 108 bytes a socket's name may take.
            folder, name = os.path.split(self.socket_path)
            folder_fd = os.open(folder, os.O_PATH | os.O_CLOEXEC)
            try:
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder_fd)
            finally:
                os.close(folder_fd)
            try:
                if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                    raise ConnectionRefusedError(f"{self.socket_path} is not a socket")
                sock.connect(f"/proc/self/fd/{fd}")
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

"""The credentials of a state folder's supervisord socket, and its one client.

What guards the socket is the filesystem: it is `run/supervisord.sock`, mode
0700 (supervisord's `chmod`), in the 0700 state folder, so only its owner can
connect (docs/security.md). supervisord nonetheless logs `CRIT Server
'unix_http_server' running without any HTTP authentication checking` at every
start unless the section has a username, and nothing else silences it
(supervisor/http.py; there is no log level above CRIT). So it gets one:
`run/supervisord.auth`, an ini fragment supervisord.conf includes, with a random
password, written once (0600, `write_private`) before supervisord first starts
and kept while the state folder lives, so a running supervisord and its
clients always agree. It is a second lock on the same door, not a new one: who
can read the file could already connect.

Every XML-RPC client of the socket (`hive` itself through
`beehive.orchestrator.supervisor`, the nats-guard) is made by `rpc()`, which
sends the credentials when the file exists. A supervisord started before the
file existed (an older bee-hive) asks for none and ignores them.

The client is the standard library's, over the unix socket: supervisor's own
`SupervisorTransport` would import its whole package (about 30 ms of CPU that
every `hive status` paid, docs/performance.md).
"""

from __future__ import annotations

import configparser
import http.client
import secrets
import socket as _socket
import xmlrpc.client
from pathlib import Path
from typing import Any

from beehive.security.secret_file import read_private, write_private

__all__ = ["USERNAME", "ensure_credentials", "rpc"]

USERNAME = "beehive"
_SECTION = "unix_http_server"


def ensure_credentials(auth_file: Path) -> None:
    """Write `auth_file` (an include of supervisord.conf) once, with a new
    password: 32 random bytes as hex, so no character means anything to
    supervisord's ini parser (`;`, `#`, `%`)."""
    if auth_file.exists() or auth_file.is_symlink():
        return
    text = (
        "; written by `hive up`: the credentials of run/supervisord.sock\n"
        f"[{_SECTION}]\nusername={USERNAME}\npassword={secrets.token_hex(32)}\n"
    )
    write_private(auth_file, text.encode())


def credentials(auth_file: Path) -> tuple[str | None, str | None]:
    """(username, password) from `auth_file`; (None, None) when there is none.
    A file others can read is refused (SecretFileError), as a key would be."""
    if not (auth_file.exists() or auth_file.is_symlink()):
        return None, None
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(read_private(auth_file, "supervisord credentials file").decode())
    return parser.get(_SECTION, "username"), parser.get(_SECTION, "password")


class _UnixConnection(http.client.HTTPConnection):
    """HTTP to a unix socket: supervisord's `unix_http_server`."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _UnixTransport(xmlrpc.client.Transport):
    """xmlrpc.client's transport on one unix socket (kept open between calls,
    reopened by http.client when supervisord closed it)."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__()
        self._path, self._timeout = path, timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        known, connection = self._connection
        if connection is None or host != known:
            # get_host_info turns `user:password@` of the URL into the auth header.
            _, self._extra_headers, _ = self.get_host_info(host)
            connection = _UnixConnection(self._path, self._timeout)
            self._connection = host, connection
        return connection


def rpc(socket: Path, auth_file: Path, timeout: float = 10.0) -> Any:
    """An XML-RPC proxy for the supervisord listening on `socket`."""
    username, password = credentials(auth_file)
    who = f"{username}:{password}@" if username and password else ""
    return xmlrpc.client.ServerProxy(
        f"http://{who}localhost", transport=_UnixTransport(socket, timeout)
    )

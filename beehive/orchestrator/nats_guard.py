"""`nats-guard`: restart nats-server when JetStream is stuck on a write error.

When a write to JetStream's store fails (the disk is full), nats-server marks
that stream or consumer store with the error and refuses every later write,
even once the disk has room again, until the server restarts; publishes then
time out unacknowledged. A server that runs out of space may also disable
JetStream outright. The server says so only in its log, so the guard reads
the log, beside the embedded server, under the same supervisord:

- every WAKE_SECONDS it reads what `logs/nats.log` gained (one `stat` and
  nothing more when it gained nothing; it does not watch the folder, which every
  node's log shares, so a busy hive does not wake it), and looks
  for `critical write error` or `will be DISABLED`;
- while the server that logged one runs, `run/nats-storage.json` says so:
  `hive status` shows it and exits non-zero;
- once the store's disk has RESTART_FREE_BYTES free again, the guard restarts
  the `nats` program through supervisord (at most once per RESTART_SPACING) and
  clears the verdict. A server restarted otherwise (by `hive up`, or after a
  crash) clears it too: the verdict names the server's pid.

Restarting drops every client connection for about a second; nodes reconnect and
JetStream redelivers whatever was not acknowledged, so nothing is lost
(docs/reliability.md). The guard reads no other file of the hive and holds no
key: the log and the disk usage are all it looks at, and supervisord's socket
credentials (`run/supervisord.auth`) only when it restarts the server.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import sys
import threading
import time
import xmlrpc.client
from pathlib import Path
from types import FrameType

# Only what the guard needs, so it stays a small process (no topology, no keys,
# no NATS client): its config, its log format, and supervisord's own client.
from beehive.core import logs
from beehive.core.configs import ConfigError, NatsGuardConfig
from beehive.core.files import write_atomic
from beehive.core.processes import pid_alive
from beehive.orchestrator import supervisor_auth
from beehive.orchestrator.nats_verdict import StuckServer
from beehive.security.secret_file import SecretFileError

__all__ = ["Guard", "main"]

log = logging.getLogger("beehive.nats_guard")

#: A log line (`[pid] date time [ERR] text`) saying JetStream will take no more writes.
_STUCK = re.compile(r"^\[(\d+)\] \S+ \S+ \[ERR\] (.*(?:critical write error|will be DISABLED).*)$")
#: Free bytes on the store's disk before the server is restarted: room for four
#: of the largest messages (MAX_MSG_BYTES, beehive/security/nats_stream.py).
#: Less, and the first write after the restart would fail again.
RESTART_FREE_BYTES = 1024 * 1024
#: Restarts are at least this far apart, whatever the log says meanwhile.
RESTART_SPACING = 10.0
#: How often the guard reads the log, and looks at the disk while the server is
#: stuck (a disk that has room again announces itself in no log line).
WAKE_SECONDS = 2.0


class Guard:
    """Reads the server's log from `offset` on; `stuck` is the server it found stuck."""

    def __init__(self, config: NatsGuardConfig) -> None:
        self.config = config
        self.offset = 0
        self.stuck: StuckServer | None = None
        self.last_restart = float("-inf")
        self.stop = threading.Event()

    def run(self) -> None:
        """Until `stop`: every WAKE_SECONDS, read what the log has gained."""
        write_atomic(self.config.ready_file, json.dumps({"pid": os.getpid()}).encode())
        log.info("watching %s", self.config.nats_log)
        self.check()  # a server stuck before the guard started counts too
        while not self.stop.wait(WAKE_SECONDS):
            self.check()

    def check(self) -> None:
        self.read_log()
        if self.stuck is not None:
            self.recover()

    def read_log(self) -> None:
        """New whole lines since `offset`; a file shorter than that was rotated."""
        try:
            size = self.config.nats_log.stat().st_size
            if size == self.offset:
                return
            if size < self.offset:
                self.offset = 0
            with self.config.nats_log.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return
        whole = data[: data.rfind(b"\n") + 1]
        self.offset += len(whole)
        for line in whole.decode(errors="replace").splitlines():
            m = _STUCK.match(line)
            if m is None or (self.stuck is not None and self.stuck.pid == int(m[1])):
                continue
            if pid_alive(pid := int(m[1])):  # else an earlier server's, gone since
                log.error("nats-server (pid %d) takes no more writes: %s", pid, m[2])
                self.stuck = StuckServer(pid, m[2], time.time())
                write_atomic(self.config.storage_file, self.stuck.to_json())

    def recover(self) -> None:
        """Restart the stuck server once its disk has room again."""
        assert self.stuck is not None
        if not pid_alive(self.stuck.pid):
            log.info("nats-server (pid %d) was restarted: its write error is gone", self.stuck.pid)
            self.clear()
            return
        free = shutil.disk_usage(self.config.jetstream_dir).free
        now = time.monotonic()
        if free < RESTART_FREE_BYTES or now - self.last_restart < RESTART_SPACING:
            return
        log.warning("the disk has room again (%d MiB free): restarting nats-server", free >> 20)
        self.last_restart = now
        try:
            self._restart()
        except (OSError, xmlrpc.client.Error, SecretFileError) as exc:
            log.error("could not restart nats-server (will retry): %s", exc)
            return
        self.clear()

    def _restart(self) -> None:
        """Stop the server (supervisord waits for it to exit), then start it."""
        rpc = supervisor_auth.rpc(
            self.config.supervisor_socket, self.config.supervisor_auth, timeout=30
        )
        rpc.supervisor.stopProcess(self.config.program, True)
        rpc.supervisor.startProcess(self.config.program, False)

    def clear(self) -> None:
        self.stuck = None
        self.config.storage_file.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m beehive.orchestrator.nats_guard",
        description="Restart nats-server when JetStream is stuck on a write error "
        "and its disk has room again.",
    )
    parser.add_argument("--config", required=True, type=Path, help="<state>/nats/guard.json")
    args = parser.parse_args(argv)
    logs.configure(os.environ.get("BEEHIVE_LOG_LEVEL", "INFO"), "nats-guard")
    try:
        guard = Guard(NatsGuardConfig.load(args.config))
    except ConfigError as exc:
        log.error("%s", exc)
        return 2

    def _stop(_sig: int, _frame: FrameType | None) -> None:
        guard.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    try:
        guard.run()
    finally:
        guard.config.ready_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

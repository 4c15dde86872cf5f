"""The handler daemon: answers every `<comp_id>.pending` in its nodes' folders.

    python -m beehive.nectar.daemon --config <state>/handlers/<name>.json [--log-level L]

supervisord runs one per handler (program `handler-<name>`). It loads the handler
file once, watches the computation folder of every attached node (inotify on the
event loop, beehive/core/watch.py: no polling, nothing to do at rest) and writes
`<comp_id>.complete` atomically for each new `.pending`.

Start-up ordering is what makes it lossless: the watcher is started (live once
`FolderWatch.start()` returns: beehive/core/watch.py), and only then are the folders scanned for
`.pending` files that arrived earlier; a file created at any moment is either seen
by the scan or reported by the watcher (answered once either way). Only then is
the ready file written, so "ready" means "nothing will be missed from now on".

The config file is watched too: when its attachments change (live attach/detach),
the folder watcher is restarted on the new set, rescanned, and the ready file
rewritten, without restarting the process.

Privacy: answers are personal data. The log names each computation and its status
at INFO; the answer itself appears only at DEBUG.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from beehive.core import logs
from beehive.core.configs import HandlerConfig, HandlerConfigError
from beehive.core.constants import COMPLETE_SUFFIX, PENDING_SUFFIX
from beehive.core.dispatch import (
    CompleteRecord,
    DispatchError,
    ensure_folder,
    is_dispatch_name,
    read_pending,
    write_complete,
)
from beehive.core.files import write_atomic
from beehive.core.handler_env import EnvFileError, handler_environment
from beehive.core.names import printable
from beehive.core.settings import Settings
from beehive.core.watch import Change, FolderWatch
from beehive.nectar.handler import Handler, HandlerError, HandlerTimeoutError
from beehive.nectar.loader import HandlerLoadError, failure_where, load_handler, own_traceback

__all__ = ["HandlerDaemon", "main"]

log = logging.getLogger("beehive.nectar.daemon")

#: How long the watcher may take to report its probes before we give up (a folder on
#: a filesystem without inotify, e.g. some network mounts, never reports).
PROBE_DEADLINE_S = 10.0
#: `<comp_id>.running` marks a computation this daemon is answering (content: pid
#: and attempt number). Found by a restarted daemon, it means the process died on
#: that input: killed from outside (run it again), or taken down by the handler
#: itself (os._exit, a segfault, the OOM killer). So a computation is run at most
#: MAX_ATTEMPTS times; after that it is answered with an error, and one bad query
#: cannot crash-loop the daemon into FATAL.
RUNNING_SUFFIX = ".running"
MAX_ATTEMPTS = 2
#: A sync handler's thread still running this long after its call timed out is
#: a runaway (a CPU loop, a call that never returns): no Python thread can be
#: stopped, so the daemon exits with EXIT_REPLACE and supervisord starts a fresh
#: one. The timed-out computation is answered first (a timeout error).
RUNAWAY_GRACE_S = 2.0
#: An event loop that has not ticked for the handler timeout plus this long is
#: held by an async handler that never awaits: the watchdog thread ends the process.
STALL_GRACE_S = 5.0
EXIT_REPLACE = 75  # EX_TEMPFAIL: supervisord restarts the daemon


class HandlerDaemon:
    """One handler, many folders. `serve()` runs until cancelled."""

    def __init__(self, config_path: str | os.PathLike[str]) -> None:
        self.config_path = Path(config_path).resolve()
        self.config = HandlerConfig.load(self.config_path)
        self.handler: Handler = load_handler(self.config.file)
        self._inflight: set[Path] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._attachments: dict[str, Path] = {}
        #: Resolved folder → alias: the watcher reports paths in the folders it was
        #: given, which are these (one dict lookup per event, no resolve()).
        self._alias_by_folder: dict[Path, str] = {}
        self._reattach = asyncio.Event()
        #: Set when the process must be replaced (a runaway call): serve() ends
        #: and main() exits with EXIT_REPLACE.
        self.replace = asyncio.Event()
        self._tick = time.monotonic()
        self._serving = threading.Event()  # the watchdog runs while it is set

    # -- the watch set ------------------------------------------------------------

    async def serve(self) -> None:
        """Watch, and rebuild the watch set whenever the attachments change."""
        log.info(
            "handler %r from %s, timeout %gs",
            self.handler.name,
            self.config.file,
            self.config.timeout,
        )
        watching = asyncio.create_task(self._watch_forever())
        replacing = asyncio.create_task(self.replace.wait())
        ticking = asyncio.create_task(self._heartbeat())
        try:
            await asyncio.wait({watching, replacing}, return_when=asyncio.FIRST_COMPLETED)
            if watching.done():
                watching.result()
        finally:
            self._serving.clear()
            for task in (watching, replacing, ticking):
                task.cancel()
            await asyncio.gather(watching, replacing, ticking, return_exceptions=True)
            await self._cancel_tasks()
            self._remove_ready_file()

    async def _watch_forever(self) -> None:
        while True:
            self._reattach.clear()
            await self._watch_generation(dict(self.config.attachments))

    # -- runaway calls ------------------------------------------------------------

    async def _heartbeat(self) -> None:
        """Tick the loop's clock for the watchdog thread, which ends the process
        when an async handler holds the loop (a CPU loop with no await): then no
        timeout can fire inside it."""
        self._tick = time.monotonic()
        self._serving.set()
        watchdog = threading.Thread(target=self._watchdog, name="loop-watchdog", daemon=True)
        watchdog.start()
        while True:
            self._tick = time.monotonic()
            await asyncio.sleep(1.0)

    def _watchdog(self) -> None:
        while self._serving.is_set():
            time.sleep(1.0)
            stalled = time.monotonic() - self._tick
            if self._serving.is_set() and stalled > self.config.timeout + STALL_GRACE_S:
                log.error(
                    "event loop held for %.0fs (handler timeout %gs): an async handler that "
                    "never awaits cannot be stopped; exiting so the daemon is replaced",
                    stalled,
                    self.config.timeout,
                )
                logging.shutdown()
                os._exit(EXIT_REPLACE)

    async def _reclaim(self, comp_id: str, alias: str, thread: threading.Thread) -> None:
        """After a sync call timed out: if its thread does not end within
        RUNAWAY_GRACE_S, replace the process (the only way to stop a thread).
        The other computations in flight are not counted as having crashed it:
        their `.running` markers go, and the next daemon runs them afresh."""
        deadline = time.monotonic() + RUNAWAY_GRACE_S
        while thread.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if not thread.is_alive():
            return
        log.error(
            "comp %s (%s): the handler is still running %gs after its %gs timeout and a "
            "thread cannot be stopped: replacing the daemon (supervisord starts a new one; "
            "%d other computation(s) in flight run again there)",
            comp_id,
            alias,
            RUNAWAY_GRACE_S,
            self.config.timeout,
            len(self._inflight),
        )
        for pending in self._inflight:
            pending.with_name(pending.name[: -len(PENDING_SUFFIX)] + RUNNING_SUFFIX).unlink(
                missing_ok=True
            )
        self.replace.set()

    async def _watch_generation(self, attachments: dict[str, Path]) -> None:
        """One watcher over `attachments` (+ the config's folder), until they change."""
        self._attachments = {alias: ensure_folder(folder) for alias, folder in attachments.items()}
        self._alias_by_folder = {f.resolve(): a for a, f in self._attachments.items()}
        folders = set(self._alias_by_folder)
        watch = FolderWatch(
            [*folders, self.config_path.parent], self._on_change, watch_filter=self._interesting
        )
        await watch.start(timeout=PROBE_DEADLINE_S)
        try:
            # The config may have changed before the watcher could see it.
            self._reload_config()
            if self.config.attachments != attachments:
                return
            for alias, folder in self._attachments.items():
                self._scan(alias, folder)
            self._write_ready_file()
            log.info(
                "watching %d folder(s) for %s",
                len(self._attachments),
                ", ".join(sorted(self._attachments)) or "no nodes",
            )
            watching = asyncio.create_task(watch.wait())
            reattach = asyncio.create_task(self._reattach.wait())
            try:
                await asyncio.wait({watching, reattach}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                reattach.cancel()
            if watching.done():
                watching.result()  # re-raise a watcher failure
                raise RuntimeError("file watcher stopped unexpectedly")
            watching.cancel()
        finally:
            await watch.stop()

    def _interesting(self, _change: Change, path: str) -> bool:
        return is_dispatch_name(os.path.basename(path), PENDING_SUFFIX) or path == str(
            self.config_path
        )

    def _on_change(self, _change: Change, path: Path) -> None:
        if path == self.config_path:
            self._on_config_change()
            return
        alias = self._alias_by_folder.get(path.parent)
        if alias is None:
            return
        try:
            self._submit(alias, path)
        except Exception:  # one odd file must not stop the watcher
            log.exception("cannot dispatch %s", path)

    def _on_config_change(self) -> None:
        old = self.config
        self._reload_config()
        if self.config.attachments != old.attachments:
            log.info(
                "attachments changed: %s -> %s",
                sorted(old.attachments),
                sorted(self.config.attachments),
            )
            self._reattach.set()

    def _reload_config(self) -> None:
        """Adopt the config file's current content; keep the old one if it is broken."""
        try:
            new = HandlerConfig.load(self.config_path)
        except HandlerConfigError as exc:
            if self.config_path.exists():
                log.error("ignoring config change: %s", exc)
            return
        if new == self.config:
            return
        if new.file.resolve() != self.config.file.resolve() or new.name != self.config.name:
            try:
                self.handler = load_handler(new.file)
            except HandlerLoadError as exc:
                log.error("ignoring config change, keeping handler %r: %s", self.handler.name, exc)
                return
            log.info("loaded handler %r from %s", self.handler.name, new.file)
        if new.timeout != self.config.timeout:
            log.info("timeout now %gs", new.timeout)
        self.config = new

    # -- computations -------------------------------------------------------------

    def _scan(self, alias: str, folder: Path) -> None:
        """Answer the `.pending` files that arrived while nobody watched (after
        settling what a dead predecessor left running)."""
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
        for entry in entries:
            if entry.name.endswith(RUNNING_SUFFIX):
                self._settle_crashed(alias, Path(entry.path))
        for entry in entries:
            if is_dispatch_name(entry.name, PENDING_SUFFIX):
                self._submit(alias, Path(entry.path))

    def _settle_crashed(self, alias: str, marker: Path) -> None:
        """A marker left by a daemon that died mid-computation: leave it for one
        more attempt, or answer the computation failed once it has had them all."""
        owner, attempts = _read_marker(marker)
        if owner == os.getpid():
            return  # ours, still running
        comp_id = marker.name[: -len(RUNNING_SUFFIX)]
        pending = marker.with_name(comp_id + PENDING_SUFFIX)
        if not pending.exists() or _complete_of(pending).exists():
            marker.unlink(missing_ok=True)
            return
        if attempts < MAX_ATTEMPTS:
            log.warning(
                "comp %s (%s): the process died while answering it; running it again",
                comp_id,
                alias,
            )
            return  # the scan submits it; _answer counts the attempt
        error = (
            f"handler {self.handler.name!r} took its process down {attempts} times "
            "while answering (crash, os._exit or killed); not run again"
        )
        log.warning("comp %s (%s): %s", comp_id, alias, error)
        try:
            write_complete(pending.parent, CompleteRecord.failed(comp_id, error, self.handler.name))
        except (OSError, DispatchError) as exc:
            log.error("comp %s (%s): cannot write .complete: %s", comp_id, alias, exc)
            return
        marker.unlink(missing_ok=True)

    def _submit(self, alias: str, pending: Path) -> None:
        """Start answering `pending` unless it is answered or being answered."""
        if pending in self._inflight or _complete_of(pending).exists():
            return
        self._inflight.add(pending)
        task = asyncio.create_task(self._answer(alias, pending), name=f"comp-{pending.stem}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, alias: str, pending: Path) -> None:
        comp_id = pending.name[: -len(PENDING_SUFFIX)]
        marker = pending.with_name(comp_id + RUNNING_SUFFIX)
        handler = self.handler
        started = time.perf_counter()
        result: int | None = None
        error: str | None = None
        timed_out = False
        runaway: threading.Thread | None = None
        try:
            try:
                comp = read_pending(pending).model_copy(update={"node": alias})
            except FileNotFoundError:
                log.info("comp %s (%s): .pending removed before it was read", comp_id, alias)
                return
            except (DispatchError, OSError) as exc:
                error = f"unreadable .pending: {exc}"
            else:
                if comp.comp_id != comp_id:
                    error = (
                        f"comp_id {comp.comp_id!r} inside the file does not match "
                        f"its name {pending.name!r}"
                    )
                else:
                    _, earlier = _read_marker(marker)
                    with contextlib.suppress(OSError):
                        marker.write_text(f"{os.getpid()} {earlier + 1}")
                    try:
                        result = await handler.run(comp, self.config.timeout)
                    except HandlerTimeoutError as exc:
                        error, timed_out = str(exc), True
                        if exc.thread is not None:
                            runaway = exc.thread
                    except HandlerError as exc:
                        error = str(exc)
                    except Exception as exc:
                        error = f"handler {handler.name!r} raised {type(exc).__name__}: {exc}"
                        _log_traceback(comp_id, alias, handler, exc, self.config.file)
            elapsed = round((time.perf_counter() - started) * 1000, 3)
            if not pending.exists():
                log.info(
                    "comp %s (%s): .pending removed while running; not answering", comp_id, alias
                )
                return
            if error is None:
                assert result is not None
                record = CompleteRecord.ok(comp_id, result, handler.name, elapsed)
            else:
                record = CompleteRecord.failed(comp_id, error, handler.name, elapsed, timed_out)
            try:
                write_complete(pending.parent, record)
            except (OSError, DispatchError) as exc:
                log.error("comp %s (%s): cannot write .complete: %s", comp_id, alias, exc)
                return
            if error is None:
                log.info("comp %s (%s): ok in %.1f ms", comp_id, alias, elapsed)
                log.debug("comp %s (%s): result %d", comp_id, alias, result)
            else:
                log.warning("comp %s (%s): error in %.1f ms: %s", comp_id, alias, elapsed, error)
        finally:
            self._inflight.discard(pending)
            marker.unlink(missing_ok=True)
        if runaway is not None:
            await self._reclaim(comp_id, alias, runaway)

    async def _cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- ready file ---------------------------------------------------------------

    def _write_ready_file(self) -> None:
        ready = self.config.ready_file
        if ready is None:
            return
        ensure_folder(ready.parent)
        body = {"pid": os.getpid(), "watching": sorted(self._attachments)}
        write_atomic(ready, json.dumps(body, sort_keys=True).encode())

    def _remove_ready_file(self) -> None:
        """Remove our ready file on exit so a health check never trusts a dead daemon."""
        ready = self.config.ready_file
        if ready is None:
            return
        try:
            if json.loads(ready.read_bytes()).get("pid") == os.getpid():
                ready.unlink()
        except (OSError, ValueError, AttributeError):
            pass


def _read_marker(marker: Path) -> tuple[int, int]:
    """(pid, attempt) from a `.running` marker; (0, 0) when there is none."""
    try:
        fields = marker.read_text().split()
        return int(fields[0]), int(fields[1]) if len(fields) > 1 else 1
    except (OSError, ValueError, IndexError):
        return 0, 0


def _complete_of(pending: Path) -> Path:
    return pending.with_name(pending.name[: -len(PENDING_SUFFIX)] + COMPLETE_SUFFIX)


def _log_traceback(comp_id: str, alias: str, handler: Handler, exc: Exception, file: Path) -> None:
    """Log where a call failed, once, at ERROR: `file:line` and the handler's own
    frames (the daemon's, asyncio's and installed libraries' are noise to whoever
    fixes the handler). A sync handler's traceback is already gone by now (dropped
    in its thread to free what its frames held); its frames were kept as text
    (`failure_stack`). Privacy: the last line is the error the warning line logs
    anyway; the messages of chained exceptions are left out (they may quote the
    query). The traceback goes where a logged exception's goes, after the line:
    multi-line, each line escaped as a message is (it holds the handler's text)."""
    if not log.isEnabledFor(logging.ERROR):
        return
    trace = own_traceback(exc, file, chained_messages=False)
    where = failure_where(exc, file) or str(file)
    record = log.makeRecord(
        log.name,
        logging.ERROR,
        __file__,
        0,
        "comp %s (%s): handler %r raised %s at %s",
        (comp_id, alias, handler.name, type(exc).__name__, where),
        None,
    )
    record.exc_text = "\n".join(printable(line) for line in trace.splitlines())
    log.handle(record)


async def _run(daemon: HandlerDaemon) -> int:
    """Serve until SIGTERM/SIGINT, then stop cleanly (supervisord stops us with
    TERM); EXIT_REPLACE when a runaway call means this process must be replaced."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await daemon.serve()
    except asyncio.CancelledError:
        log.info("stopping")
    return EXIT_REPLACE if daemon.replace.is_set() else 0


def _setup_logging(level: str, name: str) -> None:
    logs.configure(level, f"handler-{name}")


def _own_environment(config: HandlerConfig, args: argparse.Namespace) -> None:
    """Run with the handler's own environment (a minimal base plus its declared
    settings) before its code is imported: nothing of `hive up`'s environment
    leaks into it, nor into what it starts. The daemon re-executes itself with
    that environment (same pid, so supervisord keeps tracking it): then not even
    the interpreter's start-up or /proc/<pid>/environ saw anything else."""
    env = handler_environment(config.env, config.env_file)
    if args.environment_set or dict(os.environ) == env:
        os.environ.clear()
        os.environ.update(env)
        return
    argv = ["-m", "beehive.nectar.daemon", "--config", str(args.config)]
    argv += ["--log-level", args.log_level, "--environment-set"]
    logging.shutdown()
    os.execve(sys.executable, [sys.executable, *argv], env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m beehive.nectar.daemon",
        description="Answer the .pending computations of the nodes a handler is attached to.",
    )
    parser.add_argument(
        "--config", required=True, type=Path, help="handler config (<state>/handlers/<name>.json)"
    )
    parser.add_argument(
        "--log-level",
        default=Settings().log_level,
        help="DEBUG shows answers; INFO (default) never does",
    )
    parser.add_argument("--environment-set", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    _setup_logging(args.log_level, args.config.stem)
    try:
        _own_environment(HandlerConfig.load(args.config), args)
        daemon = HandlerDaemon(args.config)
    except (HandlerConfigError, HandlerLoadError, EnvFileError) as exc:
        log.error("%s", exc)
        return 2
    code = asyncio.run(_run(daemon))
    if code == EXIT_REPLACE:
        logging.shutdown()
        os._exit(code)  # the runaway thread would otherwise keep the interpreter
    return code


if __name__ == "__main__":
    sys.exit(main())

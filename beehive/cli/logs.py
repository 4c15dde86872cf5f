"""`hive logs [NAME…] [--follow] [--tail N] [--since DURATION]`: compose's habits.

Each NAME is a program (`nats`, `pack-3`), a node alias, a handler name or
`supervisord`; none means every log of the state folder. Several logs are merged
in time order, each line prefixed with its name (as `docker compose logs` does);
a single log prints bare lines, as it always has (the seed's `nectar logs`
relies on that). A node hosted in a pack shares its process's log: its own
lines carry ` node=<alias> `, and only those are shown for it.

Times come from each line's own timestamp (`2026-12-02 20:45:01,123` from the
nodes, handlers and supervisord; `2026/12/02 20:45:01.123456` from nats-server);
a line without one (a traceback's frames, a handler's print) keeps the time of
the line before it, so it stays beside it.
"""

from __future__ import annotations

import heapq
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import click

from beehive.cli.common import Fail, Hive, hive_options, host_option
from beehive.cli.completion import PROGRAM_NAMES
from beehive.core.names import printable
from beehive.topology.layout import StateLayout

_STAMP = re.compile(r"(\d{4})[-/](\d\d)[-/](\d\d)[ T](\d\d):(\d\d):(\d\d)(?:[.,](\d{1,6}))?")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Source:
    """One thing to show: the lines of `path` that contain `tag`, as `label`."""

    label: str
    path: Path
    tag: str = ""  # "" is in every line


@dataclass
class Line:
    when: float
    label: str
    text: str


def parse_duration(value: str) -> float:
    """`90s`, `10m`, `1h30m`, `2d`, or plain seconds, as seconds."""
    text = value.strip().lower()
    if text.replace(".", "", 1).isdigit():  # plain seconds (never negative)
        return float(text)
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise click.BadParameter(
            f"{value!r}: write a duration such as 90s, 10m, 1h30m or 2d", param_hint="--since"
        )
    return sum(float(n) * _UNIT[u] for n, u in parts)


def line_time(text: str) -> float | None:
    """The timestamp a log line starts with (local time), if it has one."""
    found = _STAMP.search(text, 0, 48)
    if found is None:
        return None
    year, month, day, hour, minute, second, frac = found.groups()
    micro = int((frac or "0").ljust(6, "0"))
    return datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), micro
    ).timestamp()


def stamped(
    source: Source, lines: Iterable[str], before: float = 0.0, *, timed: bool = True
) -> list[Line]:
    """`lines` of `source` that carry its tag, each with its time (or the time of
    the line before it). Untimed (one log, no --since: nothing to order by) they
    all get `before`, which spares parsing every line of a big log."""
    found: list[Line] = []
    when = before
    for text in lines:
        if timed:
            when = line_time(text) or when
        if source.tag in text:
            found.append(Line(when, source.label, text))
    return found


def history(
    source: Source, tail: int | None, since: float | None, *, timed: bool = True
) -> list[Line]:
    """The last `tail` lines (None: all) of `source` from `since` on (which needs
    their times: `timed`)."""
    try:
        text = source.path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    lines = stamped(source, text.splitlines(), timed=timed or since is not None)
    if since is not None:
        lines = [line for line in lines if line.when >= since]
    if tail is not None:
        lines = lines[-tail:] if tail else []
    return lines


def merged(histories: list[list[Line]]) -> Iterator[Line]:
    """Several logs' lines in time order; each log's own order is kept."""
    return heapq.merge(*histories, key=lambda line: line.when)


def resolve(hive: Hive, names: tuple[str, ...]) -> list[Source]:
    """What each NAME means in this state folder; every log when none is given."""
    log_dir = hive.layout.logs_dir
    if not names:
        found = sorted(log_dir.glob("*.log"))
        if not found:
            raise Fail(f"no logs in {log_dir}: has `hive up` run with this state folder?")
        return [Source(p.stem, p) for p in found]
    return [_source(hive, name) for name in dict.fromkeys(names)]


def _source(hive: Hive, name: str) -> Source:
    hosting = [p for p, nodes in hive.node_processes().items() if name in nodes]
    for path in [*hive.layout.log_candidates(name), *(hive.layout.log(p) for p in hosting)]:
        if path.exists():
            kind = StateLayout.program_of(path.stem)
            packed = name in hive.topology.nodes and kind is not None and kind[0] == "pack"
            return Source(name, path, f" node={name} " if packed else "")
    known = sorted(p.stem for p in hive.layout.logs_dir.glob("*.log"))
    raise Fail(
        f"no log named {name!r} in {hive.layout.logs_dir} (have: {', '.join(known) or 'none'})"
    )


class Printer:
    """Lines to the terminal: prefixed `label | ` when several logs are shown,
    control characters escaped (a handler may print anything; nothing it printed
    drives the terminal)."""

    def __init__(self, sources: list[Source]) -> None:
        self.prefixed = len(sources) > 1
        self.width = max(len(s.label) for s in sources)

    def __call__(self, line: Line) -> None:
        text = printable(line.text)
        print(f"{line.label:>{self.width}} | {text}" if self.prefixed else text, flush=True)


def follow_sources(sources: list[Source], show: Printer) -> None:
    """Print what each log gains from now on, until Ctrl-C.

    One watcher on the logs folder (inotify through watchfiles, no polling); a
    log that shrank was rotated by supervisord and is read from its start.
    """
    from watchfiles import watch

    offsets = {s.path: _size(s.path) for s in sources}
    last = dict.fromkeys(offsets, time.time())  # each log's latest time, for unstamped lines
    by_path: dict[Path, list[Source]] = {}
    for s in sources:
        by_path.setdefault(s.path, []).append(s)
    folders = sorted({s.path.parent for s in sources})
    try:
        for changes in watch(*folders, recursive=False, debounce=50, step=20):
            fresh: list[list[Line]] = []
            for path in sorted({Path(raw) for _, raw in changes} & set(by_path)):
                chunk = _read_new(path, offsets).splitlines()
                for s in by_path[path]:
                    fresh.append(stamped(s, chunk, last[path]))
                last[path] = next(
                    (t for t in map(line_time, reversed(chunk)) if t is not None), last[path]
                )
            for line in merged(fresh):
                show(line)
    except KeyboardInterrupt:
        return


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _read_new(path: Path, offsets: dict[Path, int]) -> str:
    """What `path` gained since its offset (all of it when it was rotated)."""
    try:
        with path.open("rb") as fh:
            start = offsets.get(path, 0)
            if fh.seek(0, 2) < start:
                start = 0
            fh.seek(start)
            data = fh.read()
    except FileNotFoundError:
        return ""
    # A line still being written stays for next time.
    complete = data.rfind(b"\n") + 1
    offsets[path] = start + complete
    return data[:complete].decode(errors="replace")


@click.command()
@click.argument("names", metavar="[NAME]...", nargs=-1, shell_complete=PROGRAM_NAMES)
@hive_options
@click.option("--follow", "-F", is_flag=True, help="Keep printing new lines (Ctrl-C to stop).")
@click.option(
    "--tail",
    "-n",
    "--lines",
    "tail",
    default="40",
    show_default=True,
    metavar="N|all",
    help="Lines of history per log (0: none, e.g. with --follow to see only new lines).",
)
@click.option(
    "--since",
    metavar="DURATION",
    help="Only lines from the last DURATION (90s, 10m, 1h30m, 2d).",
)
@host_option
def logs(
    names: tuple[str, ...],
    topology_file: Path,
    state_dir: Path | None,
    follow: bool,
    tail: str,
    since: str | None,
    host: str | None,
) -> None:
    """Show logs: each NAME is a node alias, a handler name, a program (`nats`,
    `pack-3`) or `supervisord`; all of them if none is given.

    Several logs are merged in time order, each line prefixed with its name.
    Multi-host: a node's logs are on its host (found from the topology); for the
    others say which host with --host."""
    hive = Hive.open(topology_file, state_dir, host, for_node=names[0] if names else None)
    hive.need_host("logs")
    count = _tail_count(tail)
    start = time.time() - parse_duration(since) if since is not None else None
    sources = resolve(hive, names)
    show = Printer(sources)
    timed = len(sources) > 1  # several logs are merged by time
    for line in merged([history(s, count, start, timed=timed) for s in sources]):
        show(line)
    if follow:
        follow_sources(sources, show)


def _tail_count(value: str | int) -> int | None:
    if str(value).strip().lower() == "all":
        return None
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        raise click.BadParameter(f"{value!r}: a number of lines (0 or more) or 'all'")
    return count


def register(group: click.Group) -> None:
    group.add_command(logs)

"""`hive init [DIR] [--template basic|llm]`: a new hive that runs as written.

Why it exists: a first hive otherwise starts by copying a topology and its
handlers out of this repository and fixing every relative path in it. `init`
writes a folder that `hive validate` and `hive up` accept right away: the
topology, its handler files, per-node sample documents (llm), and a README
section with the next commands.

The files are package data (`beehive/templates/init/<template>/`), so a wheel
install has them too. A `*.j2` file is rendered with jinja2 (the hive's name,
NATS port and sample rounds: the same rounds `init` prints, so what the README
says is what works) and written without the suffix; every other file is copied
byte for byte. README.md is the one file `init` adds to instead of owning: its
section, between two marker comments, is appended to a README that exists, so
a project's own README is never lost.

Nothing is overwritten without `--force`, and every file is checked before the
first one is written: a refusal leaves the folder exactly as it was.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import click

from beehive.cli.common import Fail, out
from beehive.core.files import write_atomic

if TYPE_CHECKING:
    from importlib.abc import Traversable

    import jinja2

#: Where the templates are, inside the installed package.
TEMPLATES_ROOT = ("templates", "init")
README = "README.md"
README_BEGIN = "<!-- hive init: begin (`hive init --force` rewrites this section) -->"
README_END = "<!-- hive init: end -->"
#: A folder name that becomes nothing valid (e.g. "2031") names the hive this.
FALLBACK_NAME = "hive"


@dataclass(frozen=True)
class SampleRound:
    """A round that works on a fresh hive of a template, with its exact total:
    printed by `init`, and rendered into the template's hive.yaml and README."""

    query: str
    targets: tuple[str, ...]
    expected: int
    metadata: tuple[str, ...] = ()
    #: What the round needs beyond `hive up`, said after its total.
    note: str = ""
    proposer: str = "alice"
    aggregators: tuple[str, ...] = ("alice", "bob")

    def command(self, topology: str | None = None) -> str:
        """The `hive submit` line; `topology` None: run from the hive's folder."""
        args = ["hive", "submit", self.query]
        if topology is not None:
            args += ["-f", topology]
        for item in self.metadata:
            args += ["--metadata", item]
        args += ["--proposer", self.proposer, "--aggregators", ",".join(self.aggregators)]
        args += ["--targets", ",".join(self.targets), "--wait"]
        return shlex.join(args)

    def line(self, topology: str | None = None) -> str:
        note = f" ({self.note})" if self.note else ""
        return f"{self.command(topology)}    # -> {self.expected}{note}"


@dataclass(frozen=True)
class Template:
    summary: str
    #: The default NATS port (`${HIVE_NATS_PORT:-port}`): apart from the repository's
    #: topologies' (test 14222, demo 14322), so an init'ed hive can run beside them.
    port: int
    rounds: tuple[SampleRound, ...]
    #: Said after the next steps: what the template needs that `init` cannot provide.
    needs: tuple[str, ...] = field(default=())


TEMPLATES: dict[str, Template] = {
    "basic": Template(
        summary="five nodes (three heavy) answering with the query's length; no settings",
        port=14422,
        rounds=(SampleRound("What is your secret value", ("charlie", "dave", "eve"), 75),),
    ),
    "llm": Template(
        summary="five nodes answering from their own sample documents: two count a "
        "keyword, three ask a language model a yes/no question",
        port=14433,
        rounds=(
            SampleRound(
                "How often is a leak mentioned?",
                ("alice", "bob"),
                4,
                metadata=("keyword=leak",),
            ),
            SampleRound(
                "Does any log mention a water leak?",
                ("charlie", "dave", "eve"),
                2,
                note="needs a model",
            ),
        ),
        needs=(
            "the yes/no round needs a model: `ollama serve` and `ollama pull llama3.2`, "
            "or set OPENAI_BASE_URL and OPENAI_MODEL before `hive up` (an API key goes "
            "in llm.env, or in the file HIVE_LLM_ENV_FILE names)",
        ),
    ),
}


@dataclass(frozen=True)
class Planned:
    """One file `init` is about to write, relative to the hive's folder."""

    path: str
    data: bytes
    mode: int
    #: README.md only: the section was added to a README that was there.
    appended: bool = False


def hive_name(folder: Path) -> str:
    """A valid topology name from the folder's name ("My Hive" -> "my-hive"): the
    name shows in every `hive` line and names the state folder, so the folder's
    own name is the one a user recognises."""
    raw = folder.resolve().name.lower()
    name = re.sub(r"[^a-z0-9_-]+", "-", raw)
    name = re.sub(r"^[^a-z]+", "", name)[:32].rstrip("-_")
    return name or FALLBACK_NAME


def template_files(template: str) -> list[tuple[str, Traversable]]:
    """The template's files as (relative path, resource), sorted; caches and
    hidden files of a source tree are not part of it."""
    from importlib import resources

    root = resources.files("beehive").joinpath(*TEMPLATES_ROOT, template)
    found: list[tuple[str, Traversable]] = []

    def walk(node: Traversable, prefix: str) -> None:
        for child in node.iterdir():
            if child.name.startswith(".") or child.name == "__pycache__":
                continue
            if child.name.endswith(".pyc"):
                continue
            rel = f"{prefix}{child.name}"
            if child.is_dir():
                walk(child, f"{rel}/")
            else:
                found.append((rel, child))

    if not root.is_dir():
        raise Fail(f"template {template!r} is missing from the installed package ({root})")
    walk(root, "")
    return sorted(found)


def _jinja() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render(template: str, name: str) -> dict[str, bytes]:
    """Every file of `template` as it would be written (README.md: its section only)."""
    spec = TEMPLATES[template]
    context = {
        "name": name,
        "template": template,
        "port": spec.port,
        "rounds": [r.line() for r in spec.rounds],
    }
    files: dict[str, bytes] = {}
    env = _jinja()
    for rel, resource in template_files(template):
        if rel.endswith(".j2"):
            text = env.from_string(resource.read_text(encoding="utf-8")).render(context)
            files[rel.removesuffix(".j2")] = text.encode()
        else:
            files[rel] = resource.read_bytes()
    return files


def _readme(existing: str | None, section: str, name: str) -> tuple[str, bool] | None:
    """README.md with the hive's section: (text, appended), or None when the
    section is already there (a conflict: only --force replaces it)."""
    block = f"{README_BEGIN}\n{section.rstrip()}\n{README_END}\n"
    if existing is None:
        return f"# {name}\n\n{block}", False
    start = existing.find(README_BEGIN)
    end = existing.find(README_END, start + 1)
    if start >= 0 and end >= 0:
        return None
    text = existing if not existing or existing.endswith("\n") else existing + "\n"
    return f"{text}\n{block}" if text else block, True


def _replace_section(existing: str, section: str) -> str:
    start = existing.find(README_BEGIN)
    end = existing.find(README_END, start + 1) + len(README_END)
    block = f"{README_BEGIN}\n{section.rstrip()}\n{README_END}"
    return existing[:start] + block + existing[end:]


def plan(folder: Path, template: str, *, force: bool) -> list[Planned]:
    """What `init` writes into `folder`, checked against what is there, before
    anything is written. Raises `Fail` naming every file in the way."""
    if folder.exists() and not folder.is_dir():
        raise Fail(f"{folder} is a file, not a folder: nothing written")
    name = hive_name(folder)
    files = render(template, name)
    order = sorted(files, key=lambda rel: (rel != "hive.yaml", rel == README, rel))
    taken: list[str] = []  # files --force would overwrite
    blocked: list[str] = []  # in the way even with --force: a folder, or a file as a folder
    planned: list[Planned] = []
    for rel in order:
        data = files[rel]
        target = folder / rel
        parents = [p for p in target.relative_to(folder).parents if p != Path(".")]
        if any((folder / p).exists() and not (folder / p).is_dir() for p in parents):
            blocked.append(f"{rel} (a file is where its folder would be)")
            continue
        if target.is_dir() and not target.is_symlink():
            blocked.append(f"{rel} (a folder)")
            continue
        exists = target.exists() or target.is_symlink()
        mode = 0o600 if rel.endswith(".env") else 0o644
        if rel == README:
            try:
                existing = target.read_text(encoding="utf-8") if exists else None
            except UnicodeDecodeError:
                blocked.append(f"{rel} (not UTF-8 text: init cannot add its section)")
                continue
            merged = _readme(existing, data.decode(), name)
            if merged is None:
                assert existing is not None
                if not force:
                    taken.append(f"{rel} (its hive init section)")
                    continue
                merged = (_replace_section(existing, data.decode()), False)
            text, appended = merged
            keep = target.stat().st_mode & 0o777 if exists else mode
            planned.append(Planned(rel, text.encode(), keep, appended=appended))
            continue
        if exists and not force:
            taken.append(rel)
            continue
        planned.append(Planned(rel, data, mode))
    if blocked:
        raise Fail(f"{folder}: in the way: {', '.join(blocked)}: nothing written")
    if taken:
        raise Fail(
            f"{folder} already has {', '.join(taken)}: nothing written "
            "(`hive init --force` overwrites them; or choose an empty folder)"
        )
    return planned


def write(folder: Path, planned: list[Planned]) -> None:
    """Write the plan; each file atomically, so an interrupted init leaves whole files."""
    for item in planned:
        target = folder / item.path
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, item.data, mode=item.mode)


def _summary(planned: list[Planned]) -> list[str]:
    """The files written, short: the sample documents as one line."""
    lines, docs = [], []
    for item in planned:
        if item.path.startswith("docs/"):
            docs.append(item.path)
        elif item.appended:
            lines.append(f"{item.path} (section added at the end)")
        else:
            lines.append(item.path)
    if docs:
        nodes = sorted({p.split("/")[1] for p in docs})
        lines.append(f"docs/: {len(docs)} sample documents, a folder per node ({', '.join(nodes)})")
    return lines


@click.command("init")
@click.argument(
    "folder",
    metavar="[DIR]",
    default=Path("."),
    type=click.Path(path_type=Path, file_okay=False),
)
@click.option(
    "--template",
    type=click.Choice(sorted(TEMPLATES)),
    default="basic",
    show_default=True,
    help="What to start from. "
    + "; ".join(f"{name}: {spec.summary}" for name, spec in sorted(TEMPLATES.items()))
    + ".",
)
@click.option(
    "--force",
    is_flag=True,
    help="Overwrite the files init writes (and replace README.md's hive init section) "
    "when they exist; other files are left alone.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print one JSON object: {"dir": absolute folder, "template": …, "files": '
    "[paths relative to it]}.",
)
def init_cmd(folder: Path, template: str, force: bool, as_json: bool) -> None:
    """Make a new hive in DIR (default: this folder), ready for `hive up`.

    Writes hive.yaml (named after DIR, paths relative to it, NATS port from
    HIVE_NATS_PORT or the template's default), its handler files under
    handlers/, and a section at the end of README.md saying what to run next
    (README.md is created if missing). The llm template also writes docs/<alias>/
    (invented sample documents, one folder per node) and llm.env (comments only:
    where an API key would go).

    An existing file is never overwritten without --force: init names the files
    in the way and writes nothing. `hive validate -f DIR/hive.yaml` passes right
    after init, with no settings.
    """
    planned = plan(folder, template, force=force)
    write(folder, planned)
    if as_json:
        files = [item.path for item in planned]
        print(json.dumps({"dir": str(folder.resolve()), "template": template, "files": files}))
        return
    topology = str(folder / "hive.yaml")
    quoted = shlex.quote(topology)
    spec = TEMPLATES[template]
    out.print(
        f"wrote hive {hive_name(folder)!r} (template {template}) in {folder.resolve()}:",
        markup=False,
    )
    for line in _summary(planned):
        out.print(f"  {line}", markup=False)
    out.print("next:")
    for line in (
        f"hive validate -f {quoted}",
        f"hive up -f {quoted}",
        *(r.line(topology) for r in spec.rounds),
        f"hive down -f {quoted}",
    ):
        out.print(f"  {line}", markup=False)
    for need in spec.needs:
        out.print(f"note: {need}", markup=False)


def register(group: click.Group) -> None:
    group.add_command(init_cmd)


__all__ = ["TEMPLATES", "init_cmd", "plan", "register"]

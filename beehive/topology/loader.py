"""Load a `hive.yaml` into a validated `Topology`, with errors that point at lines.

Pipeline: read → compose (PyYAML nodes keep their marks) → build plain data while
checking duplicate keys and interpolating `${VAR}` → loader-level checks (names,
handler references, handler files) → `Topology.model_validate` → map every pydantic
error back to the YAML line of its key → resolve handler paths to absolute ones.

Every problem found is collected; one `TopologyError` reports them all, one per line,
in the familiar ``file:line: field: message — hint`` form. Loading never writes.

Interpolation applies to string scalar *values* (never to keys):

- ``${VAR}``            the value of VAR; an error if VAR is unset
- ``${VAR:-default}``   VAR if set and non-empty, else ``default``
- ``${VAR:?message}``   VAR if set and non-empty, else an error showing ``message``
- ``$${``               a literal ``${``
- ``${HIVE_DIR}``        the absolute folder holding the topology file (unless the
                         environment sets HIVE_DIR): for paths a program gets as a
                         value, e.g. a handler's ``env: {DOCS_ROOT: ${HIVE_DIR}/docs}``,
                         since programs run in the state folder, not beside the file

Booleans follow YAML 1.2 (only true/false), so `no:`, `on:` or `yes:` stay strings.

A hostile file costs little: more than `MAX_FILE_BYTES` is refused before parsing;
the composed node tree is measured before anything is built (`_check_shape`), so a
"billion laughs" of nested aliases, a recursive alias or nesting deeper than
`MAX_DEPTH` is refused at once, naming its line; and what the composer itself
nests is bounded by the same depth (`_HiveLoader.compose_node`).
"""

from __future__ import annotations

import difflib
import os
import re
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from beehive.core.errors import BeehiveError
from beehive.core.names import printable

from .schema import LocatedError, Topology, UnknownHandler, _check_names

__all__ = ["Problem", "TopologyError", "load_topology", "topology_to_yaml"]

FIX_HINT = "fix the value and run `hive validate`"

#: A topology is a few kilobytes (a thousand nodes take about 40 KiB); a larger
#: file is refused before it is parsed, which bounds every step after it. Not more:
#: PyYAML's pure-Python scanner takes 10-50 s per MiB (the more so the deeper flow
#: collections nest), so 256 KiB is the most a hostile file can make it read.
MAX_FILE_BYTES = 256 * 1024
#: YAML nodes the builder may visit, counting every alias as the nodes it expands
#: to. A node entry takes 3-6 of them, so 100,000 is a topology of 15,000+ nodes:
#: far beyond anything real, yet building and validating that many takes about
#: 0.2 s. A "billion laughs" (aliases of aliases, 10 per level) passes it at its
#: 5th level, which is where the error points.
MAX_NODES = 100_000
#: Nesting levels, also counted through aliases. The schema needs 4 (nodes.alice.role,
#: handlers.h.requirements[0]); the bound keeps the recursion of the composer, the
#: builder and pydantic far below Python's limit (a RecursionError, not a located
#: error, otherwise).
MAX_DEPTH = 32

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_BOOL_TAG = "tag:yaml.org,2002:bool"


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a topology file."""

    line: int | None
    field: str | None
    message: str
    hint: str | None = FIX_HINT

    def render(self, file: Path | str) -> str:
        where = f"{file}:{self.line}" if self.line is not None else f"{file}"
        if self.field:
            where = f"{where}: {self.field}"
        text = f"{where}: {self.message}"
        return f"{text} — {self.hint}" if self.hint else text


class TopologyError(BeehiveError):
    """A topology file that cannot be loaded.

    `file`, `line` (1-based or None), `field` (dotted path like 'nodes.alice.role' or
    None), `message` and `hint` describe the first problem; `problems` holds all of
    them (at least one), and `str()` renders them one per line.
    """

    def __init__(
        self,
        file: Path | str,
        line: int | None = None,
        field: str | None = None,
        message: str = "invalid topology",
        hint: str | None = FIX_HINT,
        *,
        problems: Iterable[Problem] | None = None,
    ) -> None:
        self.file = Path(file)
        found = tuple(problems or ())
        self.problems: tuple[Problem, ...] = found or (Problem(line, field, message, hint),)
        first = self.problems[0]
        self.line: int | None = first.line
        self.field: str | None = first.field
        self.message: str = first.message
        super().__init__(self.__str__())
        self.hint: str | None = first.hint  # after the root's __init__, which resets it

    def __str__(self) -> str:
        return "\n".join(p.render(self.file) for p in self.problems)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_error, (str(self.file), self.problems))


def _rebuild_error(file: str, problems: tuple[Problem, ...]) -> TopologyError:
    return TopologyError(file, problems=problems)


# --------------------------------------------------------------------------- YAML


class _Refused(Exception):
    """A file refused at once, on its first such problem: a limit (`MAX_DEPTH`,
    `MAX_NODES`) exceeded or a recursive alias."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def _too_deep(line: int | None, field: str | None) -> _Refused:
    return _Refused(
        Problem(
            line,
            field,
            f"YAML nested more than {MAX_DEPTH} levels deep (limit {MAX_DEPTH}, counting "
            "through aliases)",
            "flatten it: a topology needs four levels",
        )
    )


class _HiveLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans (true/false only); used to compose nodes.

    The composer recurses once per nesting level: deeper than `MAX_DEPTH` is refused
    before Python's recursion limit is anywhere near. The scanner refuses deeper flow
    collections (`[[[…`) itself, as it reads them: it looks up to 1024 characters
    ahead, and each token costs it one check per open flow level.
    """

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self._depth >= MAX_DEPTH:
            raise _too_deep(self.peek_event().start_mark.line + 1, None)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        if self.flow_level >= MAX_DEPTH:
            raise _too_deep(self.get_mark().line + 1, None)
        super().fetch_flow_collection_start(TokenClass)


_HiveLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_HiveLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


_INTERP = re.compile(r"\$\$\{|\$\{(?P<body>[^}]*)\}|\$\{")
_INTERP_BODY = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|:\?)(?P<arg>.*))?", re.S)


class _InterpolationError(ValueError):
    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Expand `${VAR}`, `${VAR:-default}`, `${VAR:?message}` and `$${` in one string."""

    def expand(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "$${":
            return "${"
        body = match.group("body")
        if body is None:
            raise _InterpolationError(
                "unterminated '${' in value", "close it with '}' or write '$${' for a literal '${'"
            )
        parsed = _INTERP_BODY.fullmatch(body)
        if parsed is None:
            raise _InterpolationError(
                f"bad variable reference {token!r}",
                "use ${VAR}, ${VAR:-default} or ${VAR:?message} (or '$${' for a literal '${')",
            )
        name, op, arg = parsed.group("name", "op", "arg")
        value = env.get(name)
        if op is None:
            if value is None:
                raise _InterpolationError(
                    f"environment variable {name} is not set",
                    f"set {name} or give a default: ${{{name}:-value}}",
                )
            return value
        if value:
            return value
        if op == ":-":
            return arg
        detail = arg or "is required"
        raise _InterpolationError(f"{name}: {detail}", f"set {name} in the environment")

    return _INTERP.sub(expand, text)


def _escape(text: str) -> str:
    """Inverse of interpolation for literal text: `${` → `$${`."""
    return text.replace("${", "$${")


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _dotted(path: tuple[Any, ...]) -> str | None:
    return ".".join(str(p) for p in path) if path else None


def _check_shape(root: yaml.Node) -> None:
    """Refuse, before anything is built, a node graph the builder could not walk cheaply.

    The composer gives each anchored node once and every alias as a reference to
    it, so the graph is as small as the text, while the builder walks it as a tree
    in which each alias is a full copy. This measures that tree, memoized per
    node, so in time linear in the text: its size (every node, keys and merged
    `<<` sources included, an upper bound on what the builder visits) and its
    depth. A cycle (an alias inside its own anchor) is refused here too.
    """
    measured: dict[int, tuple[int, int]] = {}  # id(node) -> (size, depth) of its tree
    walking: set[int] = set()

    # An anchor comes before its aliases, so a node is first reached at its own place
    # in the text (or, inside itself, as a cycle): recursion here follows the composed
    # tree, which the composer kept within MAX_DEPTH.
    def measure(node: yaml.Node, path: tuple[Any, ...]) -> tuple[int, int]:
        known = measured.get(id(node))
        if known is not None:
            return known
        if id(node) in walking:
            raise _Refused(
                Problem(_line(node), _dotted(path), "recursive YAML alias", "remove the cycle")
            )
        children: list[tuple[yaml.Node, tuple[Any, ...]]] = []
        if isinstance(node, yaml.SequenceNode):
            children = [(item, (*path, i)) for i, item in enumerate(node.value)]
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else "?"
                children += [(key, (*path, name)), (value, (*path, name))]
        walking.add(id(node))
        size, depth = 1, 0
        for child, where in children:
            child_size, child_depth = measure(child, where)
            size += child_size
            depth = max(depth, child_depth)
            if size > MAX_NODES:
                raise _Refused(
                    Problem(
                        _line(node),
                        _dotted(path),
                        f"too many YAML aliases/nodes (limit {MAX_NODES:,}): this value holds "
                        f"more than {MAX_NODES:,} nodes once its aliases are expanded",
                        "remove the alias expansion: a topology needs far fewer nodes",
                    )
                )
        walking.discard(id(node))
        if depth + 1 > MAX_DEPTH:
            raise _too_deep(_line(node), _dotted(path))
        measured[id(node)] = (size, depth + 1)
        return size, depth + 1

    measure(root, ())


class _Builder:
    """Turns composed nodes into plain data, remembering the line of every key.

    Walks a graph `_check_shape` has accepted: acyclic, and small and shallow
    even with every alias expanded.
    """

    def __init__(self, loader: _HiveLoader, env: Mapping[str, str]) -> None:
        self.loader = loader
        self.env = env
        self.lines: dict[tuple[Any, ...], int] = {}
        self.problems: list[Problem] = []
        #: A string that used `${…}`, by path, as written: `hive config` shows a
        #: handler setting so (its value may be a secret).
        self.written: dict[tuple[Any, ...], str] = {}

    def build(self, node: yaml.Node, path: tuple[Any, ...]) -> Any:
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ_TAG:
                self._bad_tag(node, path)
                return None
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _bad_tag(self, node: yaml.Node, path: tuple[Any, ...]) -> None:
        self.problems.append(
            Problem(
                _line(node),
                _dotted(path),
                f"unsupported YAML tag {node.tag!r}",
                "remove the tag; a topology holds plain mappings, lists and scalars",
            )
        )

    def _scalar(self, node: yaml.Node, path: tuple[Any, ...]) -> Any:
        if node.tag == _STR_TAG:
            if "${" in node.value.replace("$${", ""):
                self.written[path] = node.value
            try:
                return interpolate(node.value, self.env)
            except _InterpolationError as exc:
                self.problems.append(Problem(_line(node), _dotted(path), str(exc), exc.hint))
                return node.value
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.problems.append(
                Problem(_line(node), _dotted(path), _yaml_message(exc), "remove the tag")
            )
            return None
        except ValueError as exc:  # a date like 2024-13-01, an int of 5,000 digits
            self.problems.append(Problem(_line(node), _dotted(path), f"YAML: {exc}", _QUOTE_HINT))
            return None

    def _mapping(self, node: yaml.MappingNode, path: tuple[Any, ...]) -> dict[Any, Any] | None:
        if node.tag != _MAP_TAG:
            self._bad_tag(node, path)
            return None
        # Duplicate keys among the keys written here (merged `<<` keys may be overridden).
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self._key(key_node, path, report=False)
            if key is _BAD:
                continue
            if key in seen:
                self.problems.append(
                    Problem(
                        _line(key_node),
                        _dotted((*path, key)),
                        f"duplicate key {key!r} (first at line {seen[key]}, "
                        f"again at line {_line(key_node)})",
                        "keep only one of them — YAML would silently use the last",
                    )
                )
            else:
                seen[key] = _line(key_node)
        try:
            self.loader.flatten_mapping(node)  # resolve `<<` merge keys in place
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark else _line(node)
            self.problems.append(Problem(line, _dotted(path), _yaml_message(exc)))
            return {}
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, path, report=True)
            if key is _BAD:
                continue
            self.lines[(*path, key)] = _line(key_node)
            out[key] = self.build(value_node, (*path, key))
        return out

    def _key(self, node: yaml.Node, path: tuple[Any, ...], *, report: bool) -> Any:
        problem = None
        if not isinstance(node, yaml.ScalarNode):
            problem = "a key must be a plain scalar, not a mapping or list"
        else:
            try:
                key = self.loader.construct_object(node)
            except yaml.YAMLError as exc:
                problem = _yaml_message(exc)
            except ValueError as exc:  # as in _scalar
                problem = f"YAML: {exc} ({_QUOTE_HINT})"
            else:
                try:
                    hash(key)
                except TypeError:
                    problem = "a key must be a plain scalar"
                else:
                    return key
        if report:
            self.problems.append(Problem(_line(node), _dotted(path), problem))
        return _BAD


_BAD = object()
_QUOTE_HINT = "quote it to keep it a string"


def _yaml_message(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None)
    context = getattr(exc, "context", None)
    if not problem:
        return str(exc).strip()
    text = f"{context}: {problem}" if context else str(problem)
    return f"YAML: {text}"


def _compose(file: Path, text: str) -> yaml.Node | None:
    loader = _HiveLoader(text)
    try:
        return loader.get_single_node()
    except _Refused as exc:
        raise TopologyError(file, problems=[exc.problem]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise TopologyError(file, line, None, _yaml_message(exc), "fix the YAML syntax") from exc
    except yaml.YAMLError as exc:
        raise TopologyError(file, None, None, _yaml_message(exc), "fix the YAML syntax") from exc
    finally:
        loader.dispose()


# --------------------------------------------------------------------------- checks


def _loader_checks(
    data: dict[Any, Any], lines: dict[tuple[Any, ...], int], base: Path
) -> list[Problem]:
    """Checks best done on the raw data: they locate precisely and report every case."""
    problems: list[Problem] = []
    for section, what in (
        ("nodes", "node alias"),
        ("handlers", "handler name"),
        ("hosts", "host name"),
    ):
        mapping = data.get(section)
        if not isinstance(mapping, dict):
            continue
        for name in mapping:
            if not isinstance(name, str):
                continue  # pydantic reports the key type
            try:
                _check_names({name: None}, what)
            except ValueError as exc:
                problems.append(
                    Problem(lines.get((section, name)), f"{section}.{name}", str(exc), "rename it")
                )

    handlers = data.get("handlers", {})
    nodes = data.get("nodes")
    if isinstance(handlers, dict) and isinstance(nodes, dict):
        known = ", ".join(sorted(str(h) for h in handlers)) or "none declared"
        for alias, spec in nodes.items():
            ref = spec.get("handler") if isinstance(spec, dict) else None
            if isinstance(ref, str) and ref not in handlers:
                close = difflib.get_close_matches(ref, [str(h) for h in handlers], n=1)
                hint = f"did you mean {close[0]!r}?" if close else "declare it under 'handlers:'"
                problems.append(
                    Problem(
                        lines.get(("nodes", alias, "handler")),
                        f"nodes.{alias}.handler",
                        str(UnknownHandler(str(alias), ref, known)),
                        hint,
                    )
                )

    if isinstance(handlers, dict):
        for name, spec in handlers.items():
            reqs = spec.get("requirements") if isinstance(spec, dict) else None
            if _plain_path(reqs) and not _resolve(base, Path(reqs)).is_file():
                problems.append(
                    Problem(
                        lines.get(("handlers", name, "requirements")),
                        f"handlers.{name}.requirements",
                        f"requirements file not found: {_resolve(base, Path(reqs))}",
                        "give a requirements file (relative to the topology) or a list",
                    )
                )
            file = spec.get("file") if isinstance(spec, dict) else None
            if not _plain_path(file):
                continue  # pydantic reports a missing, mistyped or unprintable file
            resolved = _resolve(base, Path(file))
            if not resolved.is_file():
                state = "is not a file" if resolved.exists() else "not found"
                problems.append(
                    Problem(
                        lines.get(("handlers", name, "file")),
                        f"handlers.{name}.file",
                        f"handler file {state}: {resolved}",
                        f"create it or fix the path (relative to {base})",
                    )
                )
    return problems


def _resolve(base: Path, file: Path) -> Path:
    return (base / file).resolve()


def _plain_path(value: object) -> TypeGuard[str]:
    """A non-empty string without control characters (those the schema reports)."""
    return isinstance(value, str) and bool(value) and printable(value) == value


# --------------------------------------------------------------------------- pydantic


def _unwrap(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _model_at(path: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model a dotted location lands in (e.g. ('nodes', 'alice') → NodeSpec)."""
    current: Any = Topology
    for part in path:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            current = field.annotation
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _locate(lines: dict[tuple[Any, ...], int], path: tuple[Any, ...], root: int) -> int:
    for end in range(len(path), 0, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return root


def _pydantic_problems(
    exc: ValidationError, lines: dict[tuple[Any, ...], int], root: int, already: list[Problem]
) -> list[Problem]:
    reported = {(p.field, p.message) for p in already}
    reported_messages = {p.message for p in already}
    problems: list[Problem] = []
    for err in exc.errors():
        path = tuple(p for p in err["loc"] if p != "[key]")
        cause = (err.get("ctx") or {}).get("error")
        message = str(cause) if isinstance(cause, Exception) else err["msg"]
        hint: str | None = FIX_HINT
        kind = err["type"]
        if isinstance(cause, LocatedError):
            path = cause.path
        if kind == "extra_forbidden":
            model = _model_at(path[:-1])
            allowed = sorted(model.model_fields) if model else []
            close = difflib.get_close_matches(str(path[-1]), allowed, n=1)
            message = f"unknown field {path[-1]!r}"
            hint = f"did you mean {close[0]!r}?" if close else "remove it"
            if allowed:
                hint += f" (allowed: {', '.join(allowed)})"
        elif kind == "missing":
            message = "required field is missing"
            hint = "add it"
        elif kind != "value_error" and not isinstance(err.get("input", {}), dict | list):
            message = f"{message} (got {err['input']!r})"
        field = _dotted(path)
        if (field, message) in reported or (kind == "value_error" and message in reported_messages):
            continue  # a loader check already located this one precisely
        reported.add((field, message))
        problems.append(Problem(_locate(lines, path, root), field, message, hint))
    return problems


# --------------------------------------------------------------------------- API


def load_topology(path: Path | str, env: Mapping[str, str] | None = None) -> Topology:
    """Read, interpolate, validate and resolve a topology file. Never writes anything.

    Raises `TopologyError` listing every problem found, each with its line and field.
    Handler `file:` paths in the result are absolute (resolved against the folder of
    the topology file).
    """
    file = Path(path)
    given: Mapping[str, str] = os.environ if env is None else env
    environ = {"HIVE_DIR": str(file.absolute().parent), **given}
    try:
        with file.open("rb") as stream:  # never more than the limit, whatever the file is
            raw = stream.read(MAX_FILE_BYTES + 1)
            size = os.fstat(stream.fileno()).st_size
    except FileNotFoundError:
        raise TopologyError(
            file, None, None, "topology file not found", f"looked for {file.absolute()}"
        ) from None
    except IsADirectoryError:
        raise TopologyError(
            file, None, None, "is a directory, not a topology file", "pass the YAML file"
        ) from None
    except OSError as exc:
        raise TopologyError(file, None, None, f"cannot read: {exc.strerror or exc}", None) from exc
    if len(raw) > MAX_FILE_BYTES:
        what = f"{size:,} bytes" if size > MAX_FILE_BYTES else f"more than {MAX_FILE_BYTES:,} bytes"
        raise TopologyError(
            file,
            None,
            None,
            f"file is {what}; a topology may be at most {MAX_FILE_BYTES:,} bytes (256 KiB)",
            "a topology is a few kilobytes: is this the right file?",
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TopologyError(
            file, None, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})", "save as UTF-8"
        ) from None

    root = _compose(file, text)
    if root is None or (isinstance(root, yaml.ScalarNode) and root.tag == "tag:yaml.org,2002:null"):
        raise TopologyError(
            file, None, None, "file is empty", "write a topology: version, name, nodes (see docs)"
        )
    if not isinstance(root, yaml.MappingNode):
        kind = "a list" if isinstance(root, yaml.SequenceNode) else "a single value"
        raise TopologyError(
            file,
            _line(root),
            None,
            f"the top level must be a mapping (name:, nodes:, …), not {kind}",
            "write the topology as `key: value` lines",
        )
    try:
        _check_shape(root)
    except _Refused as exc:
        raise TopologyError(file, problems=[exc.problem]) from None

    builder = _Builder(_HiveLoader(""), environ)
    try:
        data = builder.build(root, ())
    finally:
        builder.loader.dispose()
    if builder.problems or not isinstance(data, dict):
        raise TopologyError(file, problems=_sorted(builder.problems))

    base = file.absolute().parent
    problems = _loader_checks(data, builder.lines, base)
    try:
        topology = Topology.model_validate(data)
    except ValidationError as exc:
        problems += _pydantic_problems(exc, builder.lines, _line(root), problems)
        raise TopologyError(file, problems=_sorted(problems)) from None
    if problems:
        raise TopologyError(file, problems=_sorted(problems))

    handlers = {
        name: spec.model_copy(
            update={
                "file": _resolve(base, spec.file),
                "requirements": _resolve(base, spec.requirements)
                if isinstance(spec.requirements, Path)
                else spec.requirements,
                "env_file": _resolve(base, spec.env_file) if spec.env_file else None,
            }
        )
        for name, spec in topology.handlers.items()
    }
    resolved = topology.model_copy(update={"handlers": handlers})
    resolved._written_env = {
        path: text for path, text in builder.written.items() if _is_env_path(path)
    }
    return resolved


def _is_env_path(path: tuple[Any, ...]) -> bool:
    """handlers.<name>.env.<KEY> or nodes.<alias>.env.<KEY>."""
    return len(path) == 4 and path[0] in ("handlers", "nodes") and path[2] == "env"


def _sorted(problems: list[Problem]) -> list[Problem]:
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.line or 0, p.field or ""))


def topology_to_yaml(topology: Topology) -> str:
    """The resolved topology as YAML (defaults filled, sorted keys), for `hive config`.

    Deterministic, and loadable again: literal `${` in values is written as `$${`.
    """
    return yaml.safe_dump(
        topology.dump_masked(_escape_values),
        sort_keys=True,
        default_flow_style=False,
        allow_unicode=True,
    )


def _escape_values(value: Any) -> Any:
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, dict):
        return {k: _escape_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape_values(v) for v in value]
    return value

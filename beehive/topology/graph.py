"""The picture of a hive (`hive graph`): boxes, shapes and edges made from a
Topology, and three ways to write it down: SVG, Graphviz dot and Mermaid.

Pure functions, no I/O: everything is taken in a fixed order (hosts and nodes as
declared, handlers by name) and every coordinate is an integer, so one topology
always gives byte-identical output. That is what lets docs/hive-graph.svg be
checked in and regenerated, and a test compare two runs.

The SVG is laid out here, in a few lines of arithmetic, rather than by Graphviz:
`hive graph` must work on a machine with nothing but the wheel installed.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal
from xml.sax.saxutils import escape, quoteattr

if TYPE_CHECKING:
    from beehive.topology.schema import Topology

__all__ = ["Picture", "Round", "picture", "to_dot", "to_mermaid", "to_svg"]

#: What a topology without `hosts:` is drawn as: the one machine `hive up` runs on.
IMPLICIT_HOST = "localhost"

EdgeKind = Literal["nats", "handler", "route"]
#: The round roles a node shape can be marked with, strongest first.
ROUND_ROLES = ("proposer", "aggregator", "target")


@dataclass(frozen=True)
class Round:
    """Who took part in one round: what `--round COMP_ID` marks on the picture."""

    comp_id: str
    status: str  # complete | partial | failed, or "open" for a round still running
    proposer: str
    aggregators: tuple[str, ...]
    targets: tuple[str, ...]

    def roles_of(self, alias: str) -> list[str]:
        members = {
            "proposer": (self.proposer,),
            "aggregator": self.aggregators,
            "target": self.targets,
        }
        return [role for role in ROUND_ROLES if alias in members[role]]

    @property
    def summary(self) -> str:
        return (
            f"round {self.comp_id} ({self.status}): proposer {self.proposer} · "
            f"{len(self.aggregators)} aggregator(s) · {len(self.targets)} target(s)"
        )


@dataclass(frozen=True)
class NodeShape:
    """One node, or a whole replica set drawn once (`bee ×997`): a set's replicas
    share role, host and handler, so 997 shapes would say nothing one does not."""

    key: str
    name: str
    role: str
    members: tuple[str, ...]
    replica_set: bool
    #: Round roles (`proposer`, `aggregator ×3`, …); empty without `--round`.
    marks: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.name} ×{len(self.members)}" if self.replica_set else self.name

    @property
    def mark_line(self) -> str:
        return " · ".join(self.marks)

    @property
    def strongest_mark(self) -> str | None:
        """The round role the shape's outline shows (the proposer over an aggregator)."""
        return next((r for r in ROUND_ROLES[:2] if any(m.startswith(r) for m in self.marks)), None)


@dataclass(frozen=True)
class Shape:
    """A handler daemon or a NATS server: a label and a second line of detail."""

    key: str
    label: str
    detail: str = ""


@dataclass(frozen=True)
class HostBox:
    """A machine: its NATS server (if it runs one), its nodes by role, and the
    handler daemons that run beside them (a handler runs where its nodes are)."""

    key: str
    name: str
    detail: str
    nats: tuple[Shape, ...]
    heavy: tuple[NodeShape, ...]
    light: tuple[NodeShape, ...]
    handlers: tuple[Shape, ...]

    def shape_keys(self) -> list[str]:
        shapes: tuple[Shape | NodeShape, ...] = (
            *self.nats,
            *self.heavy,
            *self.light,
            *self.handlers,
        )
        return [s.key for s in shapes]

    def groups(self) -> Iterator[tuple[str, str, tuple[NodeShape, ...]]]:
        """(key suffix, caption, shapes) of each non-empty role group."""
        for suffix, caption, shapes in (
            ("heavy", "heavy · aggregator-capable", self.heavy),
            ("light", "light", self.light),
        ):
            if shapes:
                yield suffix, caption, shapes


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: EdgeKind


@dataclass(frozen=True)
class Picture:
    title: str
    hosts: tuple[HostBox, ...]
    #: An external server (`nats.url`): outside every host, since no host runs it.
    external_nats: Shape | None
    edges: tuple[Edge, ...]
    round: Round | None = None

    def node_shapes(self) -> Iterator[NodeShape]:
        for host in self.hosts:
            yield from host.heavy
            yield from host.light


# ── the model ───────────────────────────────────────────────────────────────


@dataclass
class _Keys:
    """Identifiers safe in every format (aliases may hold '-', which Mermaid reads
    as the start of an edge): a prefix and a counter, in the order shapes are made."""

    counts: dict[str, int] = field(default_factory=dict)

    def __call__(self, prefix: str) -> str:
        n = self.counts.get(prefix, 0)
        self.counts[prefix] = n + 1
        return f"{prefix}{n}"


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _marks(members: tuple[str, ...], replica_set: bool, round_: Round | None) -> tuple[str, ...]:
    """The round roles of a shape's members: `aggregator` for a node, and how many
    of a set's replicas have each role (`target ×997`), since one shape is all of them."""
    if round_ is None:
        return ()
    counts = {role: 0 for role in ROUND_ROLES}
    for alias in members:
        for role in round_.roles_of(alias):
            counts[role] += 1
    return tuple(role if not replica_set else f"{role} ×{n}" for role, n in counts.items() if n)


def picture(topology: Topology, round_: Round | None = None) -> Picture:
    """The picture of `topology`, with `round_`'s proposer, aggregators and targets
    marked when given."""
    keys = _Keys()
    nats = topology.nats
    hosts: list[str | None] = list(topology.hosts) if topology.hosts is not None else [None]
    servers: dict[str | None, Shape] = {}  # host → the embedded server it runs
    external = None
    if not nats.embedded:
        external = Shape(keys("nats"), "NATS (external)", nats.client_url)
    elif topology.hosts is None:
        servers[None] = Shape(keys("nats"), "nats-server", _hostport(nats.host, nats.port))
    else:
        for on in topology.nats_hosts():
            servers[on] = Shape(
                keys("nats"), "nats-server", _hostport(topology.address(on), nats.port)
            )
    edges: list[Edge] = []
    cluster = list(servers.values())  # each server of a cluster routes to every other
    edges += [Edge(a.key, b.key, "route") for a, b in itertools.combinations(cluster, 2)]
    sets = topology.replica_sets()
    set_of = {alias: name for name, aliases in sets.items() for alias in aliases}
    boxes = []
    for host in hosts:
        box_key = keys("host")
        shapes: list[NodeShape] = []
        handler_of: dict[str, str | None] = {}  # shape key → its handler daemon's label
        for alias, spec in topology.nodes.items():
            name = set_of.get(alias, alias)
            if (host is not None and spec.host != host) or (
                name != alias and alias != sets[name][0]
            ):
                continue  # another host's, or a replica set already drawn by its first replica
            members = tuple(sets[name]) if name != alias else (alias,)
            marks = _marks(members, name != alias, round_)
            shape = NodeShape(keys("node"), name, spec.role, members, name != alias, marks)
            shapes.append(shape)
            handler_of[shape.key] = _daemon_label(spec.handler, spec.env, shape)
        daemons: dict[str, Shape] = {}
        for label in sorted({d for d in handler_of.values() if d is not None} | _idle(topology)):
            daemons[label] = Shape(keys("handler"), label)
        # A node dials its own host's server first, else the servers in order (as
        # the compiler writes its nats_url): the edge goes to that first one.
        dialled = external or servers.get(host) or (cluster[0] if cluster else None)
        for shape in shapes:
            if dialled is not None:
                edges.append(Edge(shape.key, dialled.key, "nats"))
            daemon = handler_of[shape.key]
            if daemon is not None:
                edges.append(Edge(shape.key, daemons[daemon].key, "handler"))
        count = sum(len(s.members) for s in shapes)
        where = "implicit host" if host is None else topology.address(host)
        boxes.append(
            HostBox(
                box_key,
                IMPLICIT_HOST if host is None else host,
                f"{where} · {count:,} node(s)",
                (servers[host],) if host in servers else (),
                tuple(s for s in shapes if s.role == "heavy"),
                tuple(s for s in shapes if s.role != "heavy"),
                tuple(daemons.values()),
            )
        )
    return Picture(f"hive {topology.name}", tuple(boxes), external, tuple(edges), round_)


def _daemon_label(handler: str | None, env: dict[str, str], shape: NodeShape) -> str | None:
    """The handler daemon serving `shape`, named as its program is: `<handler>`, or
    `<handler>@<alias>` for a node with its own `env:` (one process, one
    environment); a replica set with `env:` has one such daemon per replica."""
    if handler is None:
        return None
    if not env:
        return handler
    return f"{handler}@{shape.label}"


def _idle(topology: Topology) -> set[str]:
    """`always_run` handlers no node is bound to: a daemon still runs for them, on
    the implicit host only (in a multi-host hive a handler runs where its nodes are)."""
    if topology.hosts is not None:
        return set()
    return {
        name
        for name, spec in topology.handlers.items()
        if spec.always_run and not topology.bound_nodes(name)
    }


# ── colours, one set for every format ──────────────────────────────────────

FILL = {"heavy": "#f6c343", "light": "#fff3c4", "handler": "#dbe8fb", "nats": "#dff2df"}
STROKE = {"node": "#8a6d1c", "handler": "#4a78c2", "nats": "#3c8d3c", "host": "#9e9e9e"}
MARK = {"proposer": "#c0392b", "aggregator": "#d35400"}
EDGE = {"nats": "#9aa0a6", "handler": "#4a78c2", "route": "#3c8d3c"}

# ── Graphviz dot ────────────────────────────────────────────────────────────


def _dq(text: str) -> str:
    """A dot string: quoted, with `\\` and `"` escaped and newlines as dot's `\\n`."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _lines(*parts: str) -> str:
    return "\n".join(p for p in parts if p)


def to_dot(pic: Picture) -> str:
    """Graphviz dot: a cluster per host, and inside it one per role group."""
    out = [
        f"digraph {_dq(pic.title)} {{",
        f"  graph [label={_dq(_lines(pic.title, pic.round.summary if pic.round else ''))}, "
        'labelloc=t, fontname="Helvetica", compound=true];',
        '  node [fontname="Helvetica", style=filled];',
        '  edge [fontname="Helvetica"];',
    ]

    def shape(s: Shape, kind: str, indent: str) -> str:
        form = "cylinder" if kind == "nats" else "hexagon"
        return (
            f"{indent}{s.key} [shape={form}, label={_dq(_lines(s.label, s.detail))}, "
            f'fillcolor="{FILL[kind]}", color="{STROKE[kind]}"];'
        )

    if pic.external_nats is not None:
        out.append(shape(pic.external_nats, "nats", "  "))
    for host in pic.hosts:
        out.append(f"  subgraph cluster_{host.key} {{")
        out.append(f'    label={_dq(_lines(host.name, host.detail))}; color="{STROKE["host"]}";')
        out += [shape(s, "nats", "    ") for s in host.nats]
        for suffix, caption, nodes in host.groups():
            out.append(f"    subgraph cluster_{host.key}_{suffix} {{")
            out.append(f"      label={_dq(caption)}; style=dashed;")
            for n in nodes:
                mark = n.strongest_mark
                outline = f', penwidth=3, color="{MARK[mark]}"' if mark else ""
                out.append(
                    f'      {n.key} [shape=box, style="rounded,filled", '
                    f'label={_dq(_lines(n.label, n.mark_line))}, fillcolor="{FILL[n.role]}"'
                    f"{outline}];"
                )
            out.append("    }")
        out += [shape(s, "handler", "    ") for s in host.handlers]
        out.append("  }")
    style = {"nats": "dir=none", "handler": "", "route": "dir=none, style=dashed"}
    for e in pic.edges:
        attrs = ", ".join(a for a in (style[e.kind], f'color="{EDGE[e.kind]}"') if a)
        out.append(f"  {e.source} -> {e.target} [{attrs}];")
    out.append("}")
    return "\n".join(out) + "\n"


# ── Mermaid ─────────────────────────────────────────────────────────────────


def _mq(*parts: str) -> str:
    """A Mermaid label: quoted, lines joined by <br/>, and the characters Mermaid
    would read as markup written as its entity codes."""
    text = "<br/>".join(
        p.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
        for p in parts
        if p
    )
    return f'"{text}"'


def to_mermaid(pic: Picture) -> str:
    """A Mermaid flowchart: a subgraph per host, and inside it one per role group."""
    title = " — ".join(t for t in (pic.title, pic.round.summary if pic.round else "") if t)
    out = ["---", f"title: {json.dumps(title, ensure_ascii=False)}", "---"]  # JSON is YAML
    out.append("flowchart TB")
    ext = pic.external_nats
    if ext is not None:
        out.append(f"  {ext.key}[({_mq(ext.label, ext.detail)})]")
    for host in pic.hosts:
        out.append(f"  subgraph {host.key} [{_mq(host.name, host.detail)}]")
        out += [f"    {s.key}[({_mq(s.label, s.detail)})]" for s in host.nats]
        for suffix, caption, nodes in host.groups():
            out.append(f"    subgraph {host.key}_{suffix} [{_mq(caption)}]")
            out += [f"      {n.key}({_mq(n.label, n.mark_line)})" for n in nodes]
            out.append("    end")
        out += [f"    {s.key}{{{{{_mq(s.label)}}}}}" for s in host.handlers]
        out.append("  end")
    arrow = {"nats": "---", "handler": "-->", "route": "-.-"}
    out += [f"  {e.source} {arrow[e.kind]} {e.target}" for e in pic.edges]
    classes: dict[str, list[str]] = {
        "heavy": [],
        "light": [],
        "handler": [],
        "nats": [],
        "proposer": [],
        "aggregator": [],
    }
    for n in pic.node_shapes():
        classes[n.role].append(n.key)
        if n.strongest_mark:
            classes[n.strongest_mark].append(n.key)
    for host in pic.hosts:
        classes["handler"] += [s.key for s in host.handlers]
        classes["nats"] += [s.key for s in host.nats]
    if pic.external_nats is not None:
        classes["nats"].append(pic.external_nats.key)
    for name, members in classes.items():
        if members:
            out.append(f"  classDef {name} {_mermaid_style(name)}")
            out.append(f"  class {','.join(members)} {name}")
    return "\n".join(out) + "\n"


def _mermaid_style(name: str) -> str:
    if name in MARK:
        return f"stroke:{MARK[name]},stroke-width:3px"
    return f"fill:{FILL[name]},stroke:{STROKE.get(name, STROKE['node'])}"


# ── SVG ─────────────────────────────────────────────────────────────────────

#: A monospace font, so a label's width is its length times CHAR: no font metrics
#: needed to size a box around it.
FONT = "DejaVu Sans Mono,Menlo,Consolas,monospace"
CHAR, SMALL_CHAR, HEAD_CHAR, TITLE_CHAR = 7.3, 6.1, 8.2, 9.2  # px a character, 12/10/13/15px
MARGIN, PAD, GAP, HOST_GAP, LANE = 20, 14, 12, 28, 24
HEADER_H, CAPTION_H, NATS_H, HANDLER_H, LINE_H = 34, 16, 44, 30, 14
#: Node shapes per row inside a host box.
MAX_COLS = 4


def _width(text: str, pad: int = 20, chars: float = CHAR) -> int:
    """Pixels `text` needs in a font of `chars` px a character, plus `pad`."""
    return math.ceil(len(text) * chars) + pad


@dataclass(frozen=True)
class _Box:
    x: int
    y: int
    w: int
    h: int

    @property
    def top(self) -> tuple[int, int]:
        return (self.x + self.w // 2, self.y)

    @property
    def bottom(self) -> tuple[int, int]:
        return (self.x + self.w // 2, self.y + self.h)

    @property
    def middle(self) -> tuple[int, int]:
        return (self.x + self.w // 2, self.y + self.h // 2)


class _Svg:
    """The SVG's elements in drawing order: a host's frame, then edges, then
    shapes, so a line runs under the shapes it passes."""

    def __init__(self) -> None:
        self.frames: list[str] = []
        self.shapes: list[str] = []

    def text(self, x: int, y: int, text: str, cls: str = "", anchor: str = "middle") -> None:
        klass = f" class={quoteattr(cls)}" if cls else ""
        self.shapes.append(
            f'<text x="{x}" y="{y}" text-anchor="{anchor}"{klass}>{escape(text)}</text>'
        )

    def caption(self, x: int, y: int, text: str, cls: str = "small") -> None:
        """Left-aligned text on a host's frame, on a patch of the frame's colour: a
        line passing behind it is interrupted, not drawn through the letters."""
        high, chars = (16, HEAD_CHAR) if cls == "hostname" else (12, SMALL_CHAR)
        self.shapes.append(
            f'<rect class="back" x="{x - 2}" y="{y - high + 3}" '
            f'width="{_width(text, 4, chars)}" height="{high}"/>'
        )
        self.text(x, y, text, cls, "start")

    def labelled(self, box: _Box, label: str, detail: str) -> None:
        """`label` (and `detail` under it, smaller) centred in `box`."""
        cx, cy = box.middle
        if detail:
            self.text(cx, cy - 2, label)
            self.text(cx, cy + 12, detail, "small")
        else:
            self.text(cx, cy + 4, label)


@dataclass(frozen=True)
class _Sizes:
    """What every host box of one picture shares, so boxes line up: one node size,
    one handler size, and whether each box keeps a band for a NATS server."""

    node_w: int
    node_h: int
    handler_w: int
    nats_band: bool


def _rows(
    boxes: dict[str, _Box], keys: list[str], size: tuple[int, int], per_row: int, at: _Box
) -> int:
    """Shapes of `size`, `per_row` to a row, each row centred in `at` from its top;
    the y below them."""
    w, h = size
    for i, key in enumerate(keys):
        r, c = divmod(i, per_row)
        in_row = min(per_row, len(keys) - r * per_row)
        left = at.x + (at.w - (in_row * w + (in_row - 1) * GAP)) // 2
        boxes[key] = _Box(left + c * (w + GAP), at.y + r * (h + GAP), w, h)
    return at.y + math.ceil(len(keys) / per_row) * (h + GAP)


def _layout_host(host: HostBox, x: int, y: int, sz: _Sizes) -> dict[str, _Box]:
    """Where `host`'s frame (under its own key) and each of its shapes go, from the
    frame's top-left corner: header; NATS band; the role groups side by side (so
    a node's lines up to NATS and down to its handler pass no other group); the
    handlers."""
    groups = [(suffix, caption, [n.key for n in nodes]) for suffix, caption, nodes in host.groups()]
    cols = [min(MAX_COLS, len(keys)) for _, _, keys in groups]
    group_w = [
        max(c * sz.node_w + (c - 1) * GAP, _width(caption, 0, SMALL_CHAR))
        for c, (_, caption, _) in zip(cols, groups, strict=True)
    ]
    groups_w = sum(group_w) + HOST_GAP * (len(groups) - 1)
    nats_w = max([_width(s.detail, 32) for s in host.nats] + [0])
    header_w = _width(host.name, 8, HEAD_CHAR) + _width(host.detail, 0, SMALL_CHAR)
    hcols = max(1, min(len(host.handlers), (groups_w + GAP) // (sz.handler_w + GAP)))
    inner = max(groups_w, nats_w, header_w, hcols * sz.handler_w + (hcols - 1) * GAP)
    left = x + PAD
    boxes: dict[str, _Box] = {}
    cy = y + HEADER_H
    if sz.nats_band:
        for s in host.nats:
            boxes[s.key] = _Box(left + (inner - nats_w) // 2, cy, nats_w, NATS_H)
        cy += NATS_H + 2 * GAP
    gx, bottom = left + (inner - groups_w) // 2, cy
    for (suffix, _caption, keys), c, w in zip(groups, cols, group_w, strict=True):
        boxes[f"{host.key}_{suffix}"] = _Box(gx, cy, w, CAPTION_H)
        grid = _Box(gx, cy + CAPTION_H, w, 0)
        bottom = max(bottom, _rows(boxes, keys, (sz.node_w, sz.node_h), c, grid))
        gx += w + HOST_GAP
    if host.handlers:
        at = _Box(left, bottom + GAP, inner, 0)
        bottom = _rows(boxes, [s.key for s in host.handlers], (sz.handler_w, HANDLER_H), hcols, at)
    boxes[host.key] = _Box(x, y, inner + 2 * PAD, bottom - y + PAD - GAP)
    return boxes


def to_svg(pic: Picture) -> str:
    """A standalone SVG: hosts side by side as rounded rectangles, nodes in rows
    inside them by role, NATS servers as cylinders, handler daemons as hexagons."""
    nodes = list(pic.node_shapes())
    marks = [_width(n.mark_line, 20, SMALL_CHAR) for n in nodes if n.marks]
    handlers = [s for h in pic.hosts for s in h.handlers]
    sz = _Sizes(
        node_w=max([90] + [_width(n.label) for n in nodes] + marks),
        node_h=30 + (LINE_H if marks else 0),
        handler_w=max([90] + [_width(s.label, 32) for s in handlers]),
        nats_band=any(h.nats for h in pic.hosts),
    )
    host_of = {key: h.key for h in pic.hosts for key in (h.key, *h.shape_keys())}
    # A host's nodes dialling a server elsewhere get one line for the host, not one
    # each: from the top of its box, along a lane above the boxes (an external
    # server sits above them all and needs no lane).
    remote = list(
        dict.fromkeys(
            (host_of[e.source], e.target)
            for e in pic.edges
            if e.kind == "nats" and host_of.get(e.target) != host_of[e.source]
        )
    )
    ext = pic.external_nats
    subtitle = pic.round.summary if pic.round else ""
    top = MARGIN + 24 + (18 if subtitle else 0)
    if ext is not None:
        top += NATS_H + 3 * GAP
    elif remote:
        top += LANE
    boxes: dict[str, _Box] = {}
    x = MARGIN
    for host in pic.hosts:
        boxes.update(_layout_host(host, x, top, sz))
        x += boxes[host.key].w + HOST_GAP
    height = max(boxes[h.key].h for h in pic.hosts)
    for h in pic.hosts:  # one height for all, so the boxes read as a row
        f = boxes[h.key]
        boxes[h.key] = _Box(f.x, f.y, f.w, height)
    legend_y = top + height + 2 * GAP
    width = max(
        x - HOST_GAP + MARGIN,
        _width(pic.title, 2 * MARGIN, TITLE_CHAR),
        _width(subtitle, 2 * MARGIN),
        _legend_width(pic) + 2 * MARGIN,
    )
    if ext is not None:
        ext_w = _width(ext.detail, 32)
        boxes[ext.key] = _Box((width - ext_w) // 2, top - NATS_H - 3 * GAP, ext_w, NATS_H)

    svg = _Svg()
    svg.text(MARGIN, MARGIN + 16, pic.title, "title", "start")
    if subtitle:
        svg.text(MARGIN, MARGIN + 36, subtitle, "", "start")
    for host in pic.hosts:
        f = boxes[host.key]
        svg.frames.append(
            f'<rect class="host" x="{f.x}" y="{f.y}" width="{f.w}" height="{f.h}" rx="12"/>'
        )
        svg.caption(f.x + PAD, f.y + 22, host.name, "hostname")
        svg.caption(f.x + PAD + _width(host.name, 8, HEAD_CHAR), f.y + 22, host.detail)
        for suffix, caption, _nodes in host.groups():
            cap = boxes[f"{host.key}_{suffix}"]
            svg.caption(cap.x, cap.y + 11, caption)
        for s in host.nats:
            _cylinder(svg, boxes[s.key], s)
        for n in (*host.heavy, *host.light):
            b = boxes[n.key]
            cls = " ".join(c for c in ("node", n.role, n.strongest_mark) if c)
            svg.shapes.append(
                f'<rect class="{cls}" x="{b.x}" y="{b.y}" width="{b.w}" height="{b.h}" rx="6"/>'
            )
            svg.labelled(b, n.label, n.mark_line)
        for s in host.handlers:
            _hexagon(svg, boxes[s.key], s)
    if ext is not None:
        _cylinder(svg, boxes[ext.key], ext)
    lines = [_edge(e, boxes) for e in pic.edges if (host_of[e.source], e.target) not in remote]
    lines += [
        _remote(boxes[h], boxes[server], ext is None, top - LANE // 2) for h, server in remote
    ]
    _legend(svg, pic, legend_y)
    height = legend_y + 16 + MARGIN
    return (
        "\n".join(
            [
                f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
                f'viewBox="0 0 {width} {height}" font-family={quoteattr(FONT)} font-size="12">',
                f"<title>{escape(_lines(pic.title, subtitle))}</title>",
                f"<style>{_CSS}</style>",
                f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
                *svg.frames,
                *lines,
                *svg.shapes,
                "</svg>",
            ]
        )
        + "\n"
    )


_CSS = " ".join(
    [
        f".host{{fill:#fafafa;stroke:{STROKE['host']}}}",
        f".node{{stroke:{STROKE['node']}}}",
        *(f".{k}{{fill:{v}}}" for k, v in FILL.items()),
        f".handler{{stroke:{STROKE['handler']}}}",
        f".nats{{stroke:{STROKE['nats']}}}",
        *(f".{k}{{stroke:{v};stroke-width:3}}" for k, v in MARK.items()),
        *(f".e-{k}{{stroke:{v};stroke-width:1.2;fill:none}}" for k, v in EDGE.items()),
        ".e-route{stroke-dasharray:5 4}",
        ".title{font-size:15px;font-weight:bold} .hostname{font-size:13px;font-weight:bold}",
        ".small{font-size:10px;fill:#555}",
        ".back{fill:#fafafa}",
    ]
)


def _edge(edge: Edge, boxes: dict[str, _Box]) -> str:
    """A straight line: node top to its NATS server, node bottom to its handler,
    centre to centre between clustered servers (each routes to the others)."""
    a, b = boxes[edge.source], boxes[edge.target]
    if edge.kind == "route":
        (x1, y1), (x2, y2) = a.middle, b.middle
    elif edge.kind == "nats":
        (x1, y1), (x2, y2) = a.top, b.bottom
    else:
        (x1, y1), (x2, y2) = a.bottom, b.top
    return f'<line class="e-{edge.kind}" x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}"/>'


def _remote(frame: _Box, server: _Box, lane: bool, lane_y: int) -> str:
    """A host's one line to a server outside its box: straight up to an external
    server above every box, or up to the lane, along it, and down into the server's
    box to its top."""
    (x1, y1) = frame.top
    if not lane:
        (x2, y2) = server.bottom
        return f'<line class="e-nats" x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}"/>'
    (x2, y2) = server.top
    points = f"{x1},{y1} {x1},{lane_y} {x2},{lane_y} {x2},{y2}"
    return f'<polyline class="e-nats" points="{points}"/>'


def _cylinder(svg: _Svg, b: _Box, s: Shape) -> None:
    rx, ry = b.w // 2, 6
    svg.shapes.append(
        f'<path class="nats" d="M{b.x},{b.y + ry} a{rx},{ry} 0 0,0 {b.w},0 '
        f"a{rx},{ry} 0 0,0 -{b.w},0 v{b.h - 2 * ry} a{rx},{ry} 0 0,0 {b.w},0 "
        f'v-{b.h - 2 * ry}"/>'
    )
    svg.labelled(_Box(b.x, b.y + ry, b.w, b.h - ry), s.label, s.detail)


def _hexagon(svg: _Svg, b: _Box, s: Shape) -> None:
    dx, mid = 12, b.y + b.h // 2
    points = [
        (b.x, mid),
        (b.x + dx, b.y),
        (b.x + b.w - dx, b.y),
        (b.x + b.w, mid),
        (b.x + b.w - dx, b.y + b.h),
        (b.x + dx, b.y + b.h),
    ]
    svg.shapes.append(
        f'<polygon class="handler" points="{" ".join(f"{px},{py}" for px, py in points)}"/>'
    )
    svg.labelled(b, s.label, "")


#: (SVG classes of the swatch, what it means) for the legend under the picture.
LEGEND = [
    ("node heavy", "heavy"),
    ("node light", "light"),
    ("handler", "handler"),
    ("nats", "NATS"),
]
ROUND_LEGEND = [("node light proposer", "proposer"), ("node light aggregator", "aggregator")]


def _legend_items(pic: Picture) -> list[tuple[str, str]]:
    return LEGEND + (ROUND_LEGEND if pic.round is not None else [])


def _legend_width(pic: Picture) -> int:
    return sum(_width(text, 34) for _, text in _legend_items(pic))


def _legend(svg: _Svg, pic: Picture, y: int) -> None:
    x = MARGIN
    for cls, text in _legend_items(pic):
        svg.shapes.append(f'<rect class="{cls}" x="{x}" y="{y}" width="16" height="12" rx="3"/>')
        svg.text(x + 22, y + 10, text, "small", "start")
        x += _width(text, 34)

"""The `hive.yaml` schema: what a topology may say, with defaults filled.

The field names here are a contract (scripts outside the project write these
files): add fields, never rename them. Unknown fields are errors so a typo never
silently does nothing.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from beehive.core.constants import MAX_DEADLINE_SECONDS
from beehive.core.errors import one_line
from beehive.core.models import MIN_THRESHOLD, DpPolicy, PrivacyFloor, Role, Sharing
from beehive.core.names import ALIAS_PATTERN, check_name, is_alias, printable


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Values from the file or from `${VAR}` reach generated configs (nats-server.conf,
# supervisord.conf, pip's requirements): a newline there would start a directive of
# its own, so every field that gets that far is held to what it can legitimately be.

#: One RFC 1123 label: letters, digits and '-', not at either end, 1-63 characters.
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
MAX_HOSTNAME = 253


def check_host(host: str) -> str:
    """`host` if it is an IP address (v4 or v6, no zone) or an RFC 1123 host name."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if getattr(address, "scope_id", None) is None:
            return host
        raise ValueError(f"{host!r}: an IPv6 zone index ('%...') is not supported")
    labels = host.split(".")
    if (
        len(host) <= MAX_HOSTNAME
        and all(_LABEL.fullmatch(label) for label in labels)
        # RFC 1123 2.1: the last label of a name is never all digits, so what
        # looks like a dotted quad is an address or nothing (e.g. 127.0.0.256).
        and not labels[-1].isdigit()
    ):
        return host
    raise ValueError(
        f"{host!r} is not a host name or an IP address: use an IPv4 or IPv6 address, "
        "or a name of dot-separated labels of letters, digits and '-' "
        f"(at most {MAX_HOSTNAME} characters)"
    )


def check_nats_url(url: str) -> str:
    """`url` if it is `nats://` or `tls://` with a host, and free of whitespace and
    control characters."""
    if re.search(r"\s", url) or printable(url) != url:
        raise ValueError(f"{url!r} contains whitespace or a control character")
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - the property raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError(f"{url!r}: {exc}") from None
    if parts.scheme not in ("nats", "tls") or not parts.hostname:
        raise ValueError(f"{url!r} is not a NATS URL: use nats://host:port or tls://host:port")
    return url


def _no_control(value: str, what: str) -> None:
    if printable(value) != value:  # `printable` escapes exactly the control characters
        raise ValueError(f"{what} {value!r} contains a control character (newline, tab, …)")


class NatsSpec(_Strict):
    """Where the nodes meet. Without `url` the hive runs its own nats-server.

    `host` is the address the server listens on; in a topology with `hosts:` it
    names the declared host the server runs on instead (it listens on that host's
    address). `cluster` (with `hosts:` only) lists the hosts that each run a
    nats-server, joined by routes on `cluster_port`: JetStream then keeps every
    message on min(3, servers) of them, and nodes fail over between them.
    """

    host: str = "127.0.0.1"
    port: int = Field(default=4222, ge=1, le=65535)
    url: str | None = None
    cluster: list[str] | None = None
    cluster_port: int = Field(default=6222, ge=1, le=65535)
    #: External server only (the embedded one gets generated credentials and TLS).
    #: Paths to files, never secrets inline; `${ENV}` works as everywhere. In
    #: `creds_file` / `nkey_seed_file` a literal `{alias}` is replaced by the node's
    #: alias, so each node can have its own credentials.
    ca_file: Path | None = None
    creds_file: str | None = None
    nkey_seed_file: str | None = None

    @property
    def embedded(self) -> bool:
        return self.url is None

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return check_host(value)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_nats_url(value)

    @field_validator("ca_file", "creds_file", "nkey_seed_file")
    @classmethod
    def _paths(cls, value: Path | str | None) -> Path | str | None:
        if value is not None:
            _no_control(str(value), "path")
        return value

    @model_validator(mode="after")
    def _external_credentials(self) -> NatsSpec:
        given = [n for n in ("ca_file", "creds_file", "nkey_seed_file") if getattr(self, n)]
        if self.url is None and given:
            raise ValueError(
                f"nats.{given[0]} is only for an external server (nats.url); the embedded "
                "server gets generated credentials and TLS"
            )
        if self.creds_file and self.nkey_seed_file:
            raise ValueError("nats: give creds_file or nkey_seed_file, not both")
        return self

    @property
    def client_url(self) -> str:
        return self.url or f"nats://{self.host}:{self.port}"


#: How long a node keeps a finished round's result (and its final_<id>.json).
DEFAULT_KEEP_RESULTS = 30 * 86400.0
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms]?)")
_UNIT_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "": 1.0}


def parse_duration(value: object, what: str = "duration") -> float:
    """Seconds in `value`: a number of seconds, or a string like `30d`, `12h`,
    `90m`, `3600s` (or `3600`). Positive; the error names `what`."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: {value!r} is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value.strip())):
        seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
    else:
        raise ValueError(
            f"{what}: {value!r} is not a duration: use a number of seconds or e.g. "
            "30d, 12h, 90m, 3600s"
        )
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"{what}: {value!r} must be a positive duration")
    return seconds


class DpSpec(_Strict):
    """`defaults.dp`: the hive's differential privacy (docs/privacy.md). Every
    target clips its answer into `range`, adds its share of noise for `epsilon`
    and spends `epsilon` of its `budget` per proposer per `window`."""

    epsilon: float = Field(gt=0, allow_inf_nan=False)
    budget: float = Field(gt=0, allow_inf_nan=False)
    window: float
    range: tuple[StrictInt, StrictInt]

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, value: object) -> float:
        return parse_duration(value, "dp.window")

    @model_validator(mode="after")
    def _sane(self) -> DpSpec:
        self.policy()  # the compiled policy's own checks, reported here
        return self

    def policy(self) -> DpPolicy:
        return DpPolicy(
            epsilon=self.epsilon, budget=self.budget, window=self.window, range=self.range
        )


class NodeDp(_Strict):
    """`nodes.<alias>.dp`: this participant's stricter policy, field by field: a
    smaller epsilon or budget, a longer window, a narrower range."""

    epsilon: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    budget: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    window: float | None = None
    range: tuple[StrictInt, StrictInt] | None = None

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, value: object) -> float | None:
        return None if value is None else parse_duration(value, "dp.window")

    def looser_than(self, hive: DpSpec) -> tuple[str, str] | None:
        """(field, why) of the first setting looser than the hive's, or None."""
        if self.epsilon is not None and self.epsilon > hive.epsilon:
            return "epsilon", f"epsilon {self.epsilon} is above the topology's {hive.epsilon}"
        if self.budget is not None and self.budget > hive.budget:
            return "budget", f"budget {self.budget} is above the topology's {hive.budget}"
        if self.window is not None and self.window < hive.window:
            return "window", f"window {self.window:g}s is shorter than the topology's"
        if self.range is not None and not (
            hive.range[0] <= self.range[0] and self.range[1] <= hive.range[1]
        ):
            inside = f"range {list(self.range)} is not inside the topology's {list(hive.range)}"
            return "range", inside
        return None

    def over(self, hive: DpSpec) -> DpPolicy:
        """The policy this node enforces: its own settings, the hive's elsewhere."""
        return DpPolicy(
            epsilon=hive.epsilon if self.epsilon is None else self.epsilon,
            budget=hive.budget if self.budget is None else self.budget,
            window=hive.window if self.window is None else self.window,
            range=hive.range if self.range is None else self.range,
        )


class Defaults(_Strict):
    deadline: float = Field(default=30.0, gt=0, le=86400)
    #: How long each proposer keeps a finished result (and its final_<id>.json),
    #: counted from when the round finished: `30d`, `12h`, `90m`, `3600s` or seconds.
    keep_results: float = DEFAULT_KEEP_RESULTS
    #: Privacy policy: an aggregator releases no sum over fewer contributors, so a
    #: total can never be one participant's answer in disguise.
    min_contributors: int = Field(default=2, ge=1)
    #: How answers are split among a round's aggregators: `additive` (n-of-n:
    #: every aggregator needed, no coalition smaller than all of them learns an
    #: answer) or `shamir` with `threshold` t (any t aggregators give the total;
    #: t of them together could learn an answer). t <= the round's aggregator
    #: count is checked per round, at submit.
    sharing: Sharing = "additive"
    threshold: int | None = Field(default=None, ge=1)
    #: Differential privacy every target enforces (None: none). docs/privacy.md.
    dp: DpSpec | None = None

    @field_validator("keep_results", mode="before")
    @classmethod
    def _keep_results(cls, value: object) -> float:
        return parse_duration(value, "defaults.keep_results")

    @model_validator(mode="after")
    def _threshold_with_shamir(self) -> Defaults:
        if self.sharing == "shamir" and self.threshold is None:
            raise ValueError("defaults.threshold is required with sharing: shamir")
        if self.sharing == "additive" and self.threshold is not None:
            raise ValueError(
                "defaults.threshold applies to sharing: shamir only (additive needs every "
                "aggregator)"
            )
        return self


class HandlerSpec(_Strict):
    """A handler file and how long one call may take. `file` is relative to the topology.

    `requirements` (a list of pip requirement lines, or a requirements file relative
    to the topology) gives the handler its own virtual environment, built by
    `hive up`, so it can use libraries the hive itself does not have.
    `always_run` keeps the daemon running while no node is bound to it (a handler
    launched with the seed's `nectar launch`, waiting for `nectar attach`).
    """

    file: Path
    timeout: float = Field(default=10.0, gt=0, le=MAX_DEADLINE_SECONDS)
    requirements: list[str] | Path | None = None
    always_run: bool = False
    #: Settings the handler process gets as environment variables, on top of a
    #: minimal base (PATH, HOME, LANG): nothing else of `hive up`'s environment
    #: reaches it. Values may use `${VAR}`; `hive config` shows those unexpanded.
    env: dict[str, str] = Field(default_factory=dict)
    #: A dotenv file (KEY=VALUE lines, relative to the topology) read by the
    #: handler at start: where secrets go, so they are never inline in hive.yaml
    #: nor copied into the state folder. `env:` wins over it.
    env_file: Path | None = None

    @field_validator("file")
    @classmethod
    def _file(cls, value: Path) -> Path:
        _no_control(str(value), "handler file")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        return check_env(value)

    @field_validator("requirements")
    @classmethod
    def _requirement_lines(cls, value: list[str] | Path | None) -> list[str] | Path | None:
        if isinstance(value, list):
            bad = [
                r for r in value if not r.strip() or printable(r) != r or r.strip().startswith("-")
            ]
            if bad:
                raise ValueError(
                    f"requirements {bad!r}: one package requirement per item (e.g. "
                    "'humanize==4.9.0'); put pip options in a requirements file instead"
                )
        elif value is not None:
            _no_control(str(value), "requirements file")
        return value


class NodePrivacy(_Strict):
    """A participant's own floor, stricter than the topology's (never looser)."""

    min_contributors: int = Field(ge=1)


#: A replica set larger than this is surely a typo (and would be a hive of its own).
MAX_REPLICAS = 10_000


class NodeSpec(_Strict):
    role: Role
    handler: str | None = None
    privacy: NodePrivacy | None = None
    #: This participant's stricter differential privacy (over `defaults.dp`).
    dp: NodeDp | None = None
    #: The declared host the node runs on (with `hosts:`, required).
    host: str | None = None
    #: This node's own values for its handler's `env:` (its documents folder, its
    #: model): the node then gets a handler process of its own
    #: (`handler-<handler>@<alias>`), since one process has one environment.
    env: dict[str, str] = Field(default_factory=dict)
    #: This entry stands for N nodes `<name>-1 … <name>-N`, each with its own
    #: identity, under this role and handler (`Topology.nodes` holds the replicas;
    #: the set's name, given as a target or aggregator, means all of them).
    replicas: StrictInt | None = Field(default=None, ge=1, le=MAX_REPLICAS)

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        return check_env(value)


def replica_aliases(name: str, count: int) -> list[str]:
    """The aliases of replica set `name` of `count` nodes: `<name>-1 … <name>-N`."""
    return [f"{name}-{i}" for i in range(1, count + 1)]


class RuntimeSpec(_Strict):
    """How the nodes of this host are run. `nodes_per_process` > 1 packs up to that
    many nodes into one supervised process (one event loop, one watcher), each
    still with its own keys, NATS user, store and dispatch folder: what lets a
    thousand participants share one machine for a simulation. 1 (the default) is
    one process per node."""

    nodes_per_process: StrictInt = Field(default=1, ge=1, le=1000)


class HostSpec(_Strict):
    """One machine of a multi-host hive: the address the other hosts reach it at."""

    address: str

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return check_host(value)


class Topology(_Strict):
    version: Literal[1] = 1
    name: str = Field(pattern=ALIAS_PATTERN)
    nats: NatsSpec = Field(default_factory=NatsSpec)
    defaults: Defaults = Field(default_factory=Defaults)
    handlers: dict[str, HandlerSpec] = Field(default_factory=dict)
    #: Optional: the machines the hive spans (docs/multi-host.md). Without it the
    #: whole hive is one implicit host, run by one `hive up`.
    hosts: dict[str, HostSpec] | None = None
    nodes: dict[str, NodeSpec]
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
    #: Replica sets as declared (`replicas: N`), by name: `nodes` holds their
    #: replicas instead. Set by the last validator; `dump_masked` folds them back.
    _replica_sets: dict[str, NodeSpec] = PrivateAttr(default_factory=dict)
    #: Handler settings written with `${…}`, by path (handlers|nodes, name, "env",
    #: KEY), as written: set by the loader, so `hive config` never shows their values.
    _written_env: dict[tuple[str, ...], str] = PrivateAttr(default_factory=dict)

    def dump_masked(self, escape: Callable[[Any], Any] = lambda data: data) -> dict[str, Any]:
        """`model_dump(mode="json")` (through `escape`) with every handler setting
        written with `${…}` shown as written, never its value: what `hive config`
        and the state folder's topology.json hold."""
        data = escape(self.model_dump(mode="json"))
        for name, spec in self._replica_sets.items():
            for alias in replica_aliases(name, spec.replicas or 0):
                del data["nodes"][alias]
            data["nodes"][name] = escape(spec.model_dump(mode="json"))
        for (section, name, _, key), text in self._written_env.items():
            data[section][name]["env"][key] = text
        return data

    @field_validator("nodes")
    @classmethod
    def _nodes_named_and_aggregating(cls, nodes: dict[str, NodeSpec]) -> dict[str, NodeSpec]:
        _check_names(nodes, "node alias")
        if not nodes:
            raise ValueError("a topology needs at least one node")
        if not any(n.role == "heavy" for n in nodes.values()):
            raise ValueError("no heavy node: a round needs at least one aggregator (role: heavy)")
        return nodes

    @field_validator("hosts")
    @classmethod
    def _hosts_named(cls, hosts: dict[str, HostSpec] | None) -> dict[str, HostSpec] | None:
        if hosts is not None:
            _check_names(hosts, "host name")
            if not hosts:
                raise ValueError("hosts: is empty: declare at least one host, or remove it")
        return hosts

    @field_validator("handlers")
    @classmethod
    def _handlers_named(cls, handlers: dict[str, HandlerSpec]) -> dict[str, HandlerSpec]:
        _check_names(handlers, "handler name")
        return handlers

    @model_validator(mode="after")
    def _node_floors_only_stricter(self) -> Topology:
        for alias, node in self.nodes.items():
            own = node.privacy
            if own is not None and own.min_contributors < self.defaults.min_contributors:
                raise LooserFloor(alias, own.min_contributors, self.defaults.min_contributors)
            if node.dp is not None:
                hive = self.defaults.dp
                if hive is None:
                    raise DpError(
                        alias,
                        "",
                        "sets dp: but the topology has no defaults.dp; declare the "
                        "hive's policy there (a node's own may only be stricter)",
                    )
                looser = node.dp.looser_than(hive)
                if looser is not None:
                    field, why = looser
                    raise DpError(alias, field, f"dp {why}; a node's may only be stricter")
                try:
                    node.dp.over(hive)
                except ValidationError as exc:
                    raise DpError(alias, "", one_line(exc, "dp")) from exc
        return self

    @model_validator(mode="after")
    def _handler_references_exist(self) -> Topology:
        for alias, node in self.nodes.items():
            if node.handler is not None and node.handler not in self.handlers:
                known = ", ".join(sorted(self.handlers)) or "none declared"
                raise UnknownHandler(alias, node.handler, known)
            if node.env and node.handler is None:
                raise NodeEnvWithoutHandler(alias)
        return self

    @model_validator(mode="after")
    def _hosts_placed(self) -> Topology:
        """With `hosts:`, every node and the embedded server name a declared host."""
        nats = self.nats
        if self.hosts is None:
            for alias, node in self.nodes.items():
                if node.host is not None:
                    raise HostReference(
                        ("nodes", alias, "host"),
                        f"node {alias!r} names host {node.host!r}, but the topology declares "
                        "no hosts: add a 'hosts:' section, or remove the field",
                    )
            if nats.cluster is not None:
                raise HostReference(
                    ("nats", "cluster"), "nats.cluster needs a 'hosts:' section to place servers"
                )
            return self
        known = ", ".join(sorted(self.hosts))
        for alias, node in self.nodes.items():
            if node.host is None:
                raise HostReference(
                    ("nodes", alias),
                    f"node {alias!r} has no host: with 'hosts:' declared every node needs "
                    f"`host:` (declared: {known})",
                )
            if node.host not in self.hosts:
                raise HostReference(
                    ("nodes", alias, "host"),
                    f"node {alias!r} names host {node.host!r}, which is not declared under "
                    f"'hosts:' (declared: {known})",
                )
        if nats.embedded:
            if nats.host not in self.hosts:
                raise HostReference(
                    ("nats", "host"),
                    f"nats.host {nats.host!r} must name the declared host the server runs on "
                    f"(declared: {known})",
                )
            for host in nats.cluster or []:
                if host not in self.hosts:
                    raise HostReference(
                        ("nats", "cluster"),
                        f"nats.cluster names host {host!r}, which is not declared (declared: "
                        f"{known})",
                    )
            if nats.cluster is not None and (
                nats.host not in nats.cluster or len(set(nats.cluster)) != len(nats.cluster)
            ):
                raise HostReference(
                    ("nats", "cluster"),
                    "nats.cluster must list each host once, nats.host among them",
                )
        elif nats.cluster is not None:
            raise HostReference(
                ("nats", "cluster"), "nats.cluster is for the embedded server, not nats.url"
            )
        return self

    @model_validator(mode="after")
    def _expand_replicas(self) -> Topology:
        """Last, so every check above located its error at the entry as written:
        each `replicas: N` entry becomes its N replicas, in place, each a node of its
        own. A replica's alias may not be one declared elsewhere."""
        sets = {name: spec for name, spec in self.nodes.items() if spec.replicas}
        if not sets:
            return self
        expanded: dict[str, NodeSpec] = {}
        for name, spec in self.nodes.items():
            if not spec.replicas:
                expanded[name] = spec
                continue
            aliases = replica_aliases(name, spec.replicas)
            if not is_alias(aliases[-1]):
                raise ReplicaError(
                    name,
                    f"replica set {name!r}: its replica names ({aliases[0]} … {aliases[-1]}) "
                    "would be longer than 32 characters: shorten the name",
                )
            for alias in aliases:
                if alias in self.nodes:
                    raise ReplicaError(
                        alias,
                        f"node {alias!r} is also a replica of {name!r} (replicas: "
                        f"{spec.replicas}): rename the node or the replica set",
                        at=(),
                    )
            replica = spec.model_copy(update={"replicas": None})
            expanded.update(dict.fromkeys(aliases, replica))
        self.nodes = expanded
        self._replica_sets = sets
        return self

    def replica_sets(self) -> dict[str, list[str]]:
        """Each replica set's name and its replicas' aliases."""
        return {n: replica_aliases(n, s.replicas or 0) for n, s in self._replica_sets.items()}

    def expand(self, names: list[str]) -> list[str]:
        """`names` with each replica set's name replaced by its replicas, in order,
        each alias once: what `--targets bee` and `--aggregators` mean."""
        sets = self.replica_sets()
        return list(dict.fromkeys(a for n in names for a in sets.get(n, [n])))

    # ── placement (multi-host) ───────────────────────────────────────────────

    @property
    def multi_host(self) -> bool:
        return self.hosts is not None

    def nodes_on(self, host: str | None) -> list[str]:
        """The nodes `host` runs (every node for None: the implicit single host)."""
        return sorted(a for a, n in self.nodes.items() if host is None or n.host == host)

    def nats_hosts(self) -> list[str]:
        """The hosts that run an embedded nats-server: the cluster, or nats.host."""
        if self.hosts is None or not self.nats.embedded:
            return []
        return list(self.nats.cluster or [self.nats.host])

    def address(self, host: str) -> str:
        assert self.hosts is not None
        return self.hosts[host].address

    def privacy_floor(self, alias: str) -> PrivacyFloor:
        """The floor `alias` enforces: the topology's defaults, raised by the node's
        own `privacy:`. A Shamir topology's threshold is a floor for every round."""
        own = self.nodes[alias].privacy
        return PrivacyFloor(
            min_contributors=max(
                self.defaults.min_contributors, own.min_contributors if own else 1
            ),
            min_threshold=max(MIN_THRESHOLD, self.defaults.threshold or MIN_THRESHOLD),
            dp=self.dp_policy(alias),
        )

    def dp_policy(self, alias: str) -> DpPolicy | None:
        """The differential privacy `alias` enforces as a target, None without."""
        hive, own = self.defaults.dp, self.nodes[alias].dp
        if hive is None:
            return None
        return hive.policy() if own is None else own.over(hive)

    def heavy(self) -> list[str]:
        return sorted(a for a, n in self.nodes.items() if n.role == "heavy")

    def bound_nodes(self, handler: str, host: str | None = None) -> list[str]:
        """Nodes bound to `handler` (on `host` only, when given)."""
        return sorted(a for a in self.nodes_on(host) if self.nodes[a].handler == handler)


class LocatedError(ValueError):
    """A validation error that knows where in the file it belongs (`path`, e.g.
    ('nodes', 'alice', 'handler')): the loader reports it at that key's line."""

    path: tuple[str, ...] = ()


class HostReference(LocatedError):
    """A node or the NATS server placed on a host the topology does not declare."""

    def __init__(self, path: tuple[str, ...], message: str) -> None:
        self.path = path
        super().__init__(message)


class ReplicaError(LocatedError):
    """A replica set whose replicas cannot be named (too long, or an alias that is
    already a node): located at nodes.<name>.replicas (or nodes.<name>)."""

    def __init__(self, name: str, message: str, at: tuple[str, ...] = ("replicas",)) -> None:
        self.path = ("nodes", name, *at)
        super().__init__(message)


class LooserFloor(LocatedError):
    """A node's own floor below the topology's (at nodes.<alias>.privacy)."""

    def __init__(self, alias: str, own: int, floor: int) -> None:
        self.alias = alias
        self.path = ("nodes", alias, "privacy", "min_contributors")
        super().__init__(
            f"node {alias!r}: privacy.min_contributors {own} is below the topology's "
            f"defaults.min_contributors {floor}; a node's floor can only be stricter"
        )


class DpError(LocatedError):
    """A node's `dp:` that is looser than the hive's, or has nothing to tighten."""

    def __init__(self, alias: str, field: str, why: str) -> None:
        self.path = ("nodes", alias, "dp", *([field] if field else []))
        super().__init__(f"node {alias!r}: {why}")


class NodeEnvWithoutHandler(LocatedError):
    """`nodes.<alias>.env` on a node with no handler: nothing would read it."""

    def __init__(self, alias: str) -> None:
        self.path = ("nodes", alias, "env")
        super().__init__(
            f"node {alias!r} sets env: but has no handler: set `handler:` or remove `env:`"
        )


#: An environment variable's name, as a shell would accept it.
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_env(env: dict[str, str]) -> dict[str, str]:
    """Names a shell accepts, values without NUL (no process could get them)."""
    for key, value in env.items():
        if not _ENV_NAME.match(key):
            raise ValueError(
                f"env name {key!r}: letters, digits and '_', not starting with a digit"
            )
        if "\0" in value:
            raise ValueError(f"env {key}: the value holds a NUL character")
    return env


class UnknownHandler(LocatedError):
    """A node names a handler the topology does not declare (located at nodes.<alias>.handler)."""

    def __init__(self, alias: str, handler: str, known: str) -> None:
        self.alias = alias
        self.path = ("nodes", alias, "handler")
        super().__init__(
            f"node {alias!r} uses handler {handler!r}, which is not declared under "
            f"'handlers:' (declared: {known})"
        )


def _check_names(mapping: Mapping[str, object], what: str) -> None:
    for name in mapping:
        check_name(name, what)

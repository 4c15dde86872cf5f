"""The pinned directory: the only source of trust in a Bee-Hive network.

`hive up` writes it from the generated keys and every node loads it from disk.
Nothing received over the network can add to it or change a key, which closes
the seed's hole of accepting any re-registration.

A multi-host hive's directory (signed by `hive trust sign`) also says where each
member runs (`hosts`: each host's address, nodes, public NATS nkeys and the
fingerprint of its nats-server certificate) and which CA certificate the hive
trusts (`ca_sha256`): everything a host needs from the others, under one
operator signature. Nodes read only members and roles.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from beehive.core.errors import TrustError
from beehive.core.models import Role
from beehive.security.identity import PublicIdentity

__all__ = ["DIRECTORY_VERSION", "Directory", "DirectoryError", "HostEntry"]

DIRECTORY_VERSION = 1


class DirectoryError(TrustError, ValueError):
    """The directory file is unusable; nodes must not start with a partial trust set."""


@dataclass(frozen=True)
class HostEntry:
    """One host of a multi-host directory, as the operator signed it."""

    address: str
    nodes: tuple[str, ...]
    #: alias → public NATS user nkey (U…); `_admin` too on the host that creates
    #: the stream (the server config holds only these public halves).
    nkeys: Mapping[str, str]
    #: sha256 (hex) of the nats-server certificate `trust sign` issued to this
    #: host, None when it runs no server.
    nats_cert_sha256: str | None = None

    def to_doc(self) -> dict[str, object]:
        doc: dict[str, object] = {
            "address": self.address,
            "nodes": list(self.nodes),
            "nkeys": dict(sorted(self.nkeys.items())),
        }
        if self.nats_cert_sha256 is not None:
            doc["nats_cert_sha256"] = self.nats_cert_sha256
        return doc

    @classmethod
    def from_doc(cls, host: str, doc: object) -> HostEntry:
        allowed = {"address", "nodes", "nkeys", "nats_cert_sha256"}
        if not isinstance(doc, dict) or not {"address", "nodes", "nkeys"} <= set(doc) <= allowed:
            raise DirectoryError(
                f"host {host!r} must have address, nodes, nkeys (and nats_cert_sha256)"
            )
        nodes, nkeys, cert = doc["nodes"], doc["nkeys"], doc.get("nats_cert_sha256")
        if (
            not isinstance(doc["address"], str)
            or not isinstance(nodes, list)
            or not all(isinstance(n, str) for n in nodes)
            or not isinstance(nkeys, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in nkeys.items())
            or not (cert is None or isinstance(cert, str))
        ):
            raise DirectoryError(f"host {host!r}: a field has the wrong type")
        return cls(doc["address"], tuple(nodes), dict(nkeys), cert)


class Directory:
    """An immutable alias → PublicIdentity map for one network, with each member's
    role when `hive up` signed one in (`roles`): a node checks against it that the
    aggregators a spec names are heavy nodes, from signed data, not from the spec.

    `hosts` and `ca_sha256` are a multi-host directory's placement and CA (see
    the module docstring); a single-host directory has neither."""

    __slots__ = ("_members", "_roles", "ca_sha256", "hosts", "network")

    def __init__(
        self,
        network: str,
        members: Mapping[str, PublicIdentity],
        roles: Mapping[str, Role] | None = None,
        *,
        hosts: Mapping[str, HostEntry] | None = None,
        ca_sha256: str | None = None,
    ) -> None:
        if not isinstance(network, str) or not network:
            raise DirectoryError("network name must be a non-empty string")
        if roles is not None:
            if set(roles) != set(members):
                raise DirectoryError("roles must name exactly the directory's members")
            bad = sorted(a for a, r in roles.items() if r not in ("heavy", "light"))
            if bad:
                raise DirectoryError(f"member {bad[0]!r} has an unknown role {roles[bad[0]]!r}")
        checked: dict[str, PublicIdentity] = {}
        signing_owner: dict[bytes, str] = {}
        hpke_owner: dict[bytes, str] = {}
        for alias in sorted(members):
            member = members[alias]
            if not isinstance(member, PublicIdentity):
                raise DirectoryError(f"member {alias!r} is not a PublicIdentity")
            if member.alias != alias:
                raise DirectoryError(f"member listed as {alias!r} is named {member.alias!r}")
            # A key shared by two aliases would let one node speak as the other
            # (the sender alias is only as good as the key that signs it).
            for owners, key, what in (
                (signing_owner, member.signing_key, "signing"),
                (hpke_owner, member.hpke_key, "HPKE"),
            ):
                if key in owners:
                    raise DirectoryError(f"{alias!r} and {owners[key]!r} have the same {what} key")
                owners[key] = alias
            checked[alias] = member
        if hosts is not None:
            placed = [a for entry in hosts.values() for a in entry.nodes]
            if sorted(placed) != sorted(checked):
                raise DirectoryError("hosts must place every member exactly once")
        self.network = network
        self._members = MappingProxyType(checked)
        self._roles = MappingProxyType(dict(sorted(roles.items()))) if roles is not None else None
        self.hosts = MappingProxyType(dict(sorted(hosts.items()))) if hosts is not None else None
        self.ca_sha256 = ca_sha256

    @property
    def members(self) -> Mapping[str, PublicIdentity]:
        return self._members

    def host_of(self, alias: str) -> str | None:
        """The host `alias` runs on; None in a single-host directory."""
        for host, entry in (self.hosts or {}).items():
            if alias in entry.nodes:
                return host
        return None

    def role(self, alias: str) -> Role | None:
        """`alias`'s signed role; None if the directory carries no roles."""
        return self._roles.get(alias) if self._roles is not None else None

    def __getitem__(self, alias: str) -> PublicIdentity:
        return self._members[alias]

    def __contains__(self, alias: object) -> bool:
        return alias in self._members

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)  # built sorted in __init__

    def __len__(self) -> int:
        return len(self._members)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Directory):
            return NotImplemented
        return (
            self.network == other.network
            and dict(self._members) == dict(other._members)
            and self._roles == other._roles
            and self.hosts == other.hosts
            and self.ca_sha256 == other.ca_sha256
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Directory(network={self.network!r}, members={list(self._members)!r})"

    def to_json(self) -> bytes:
        """Deterministic bytes, so `hive up` twice writes an identical file and a
        key change shows up as a real diff."""
        doc: dict[str, object] = {
            "version": DIRECTORY_VERSION,
            "network": self.network,
            "members": {
                alias: {
                    "signing_key": base64.b64encode(m.signing_key).decode("ascii"),
                    "hpke_key": base64.b64encode(m.hpke_key).decode("ascii"),
                }
                for alias, m in self._members.items()
            },
        }
        if self._roles is not None:
            doc["roles"] = dict(self._roles)
        if self.hosts is not None:
            doc["hosts"] = {host: entry.to_doc() for host, entry in self.hosts.items()}
        if self.ca_sha256 is not None:
            doc["ca_sha256"] = self.ca_sha256
        return (json.dumps(doc, sort_keys=True, indent=2) + "\n").encode("ascii")

    @classmethod
    def from_json(cls, data: bytes) -> Directory:
        """Parse strictly: unknown or duplicate fields are errors, because a
        directory that means something other than what it appears to say is a
        trust problem, not a formatting one."""
        try:
            doc = json.loads(data, object_pairs_hook=_no_duplicates)
        except DirectoryError:
            raise
        except (ValueError, TypeError, UnicodeDecodeError, RecursionError) as e:
            raise DirectoryError(f"directory is not valid JSON: {e}") from None
        if not isinstance(doc, dict):
            raise DirectoryError("directory must be a JSON object")
        if set(doc) - {"roles", "hosts", "ca_sha256"} != {"version", "network", "members"}:
            raise DirectoryError(
                "directory must have exactly version, network, members (and roles, hosts, "
                f"ca_sha256); got {sorted(doc)}"
            )
        if doc["version"] != DIRECTORY_VERSION or isinstance(doc["version"], bool):
            raise DirectoryError(f"unsupported directory version {doc['version']!r}")
        members_doc = doc["members"]
        if not isinstance(members_doc, dict):
            raise DirectoryError("directory members must be an object")
        members: dict[str, PublicIdentity] = {}
        for alias, entry in members_doc.items():
            if not isinstance(entry, dict) or set(entry) != {"signing_key", "hpke_key"}:
                raise DirectoryError(f"member {alias!r} must have exactly signing_key and hpke_key")
            try:
                members[alias] = PublicIdentity(
                    alias=alias,
                    signing_key=_b64(entry["signing_key"]),
                    hpke_key=_b64(entry["hpke_key"]),
                )
            except ValueError as e:
                raise DirectoryError(f"member {alias!r}: {e}") from None
        roles = doc.get("roles")
        if roles is not None and not isinstance(roles, dict):
            raise DirectoryError("directory roles must be an object")
        hosts_doc, ca = doc.get("hosts"), doc.get("ca_sha256")
        if hosts_doc is not None and not isinstance(hosts_doc, dict):
            raise DirectoryError("directory hosts must be an object")
        if ca is not None and not isinstance(ca, str):
            raise DirectoryError("directory ca_sha256 must be a string")
        hosts = (
            {h: HostEntry.from_doc(h, e) for h, e in hosts_doc.items()}
            if hosts_doc is not None
            else None
        )
        return cls(doc["network"], members, roles, hosts=hosts, ca_sha256=ca)

    @classmethod
    def load(cls, path: Path) -> Directory:
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise DirectoryError(f"cannot read directory {path}: {e.strerror or e}") from None
        try:
            return cls.from_json(data)
        except DirectoryError as e:
            raise DirectoryError(f"{path}: {e}") from None


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise DirectoryError(f"duplicate key {key!r} in directory")
        out[key] = value
    return out


def _b64(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError("key must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("key is not valid base64") from None

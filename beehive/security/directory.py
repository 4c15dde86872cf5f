"""The pinned directory: the only source of trust in a Bee-Hive network.

`hive up` writes it from the generated keys and every node loads it from disk.
Nothing received over the network can add to it or change a key, which closes
the seed's hole of accepting any re-registration.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType

from beehive.core.errors import TrustError
from beehive.core.models import Role
from beehive.security.identity import PublicIdentity

__all__ = ["DIRECTORY_VERSION", "Directory", "DirectoryError"]

DIRECTORY_VERSION = 1


class DirectoryError(TrustError, ValueError):
    """The directory file is unusable; nodes must not start with a partial trust set."""


class Directory:
    """An immutable alias → PublicIdentity map for one network, with each member's
    role when `hive up` signed one in (`roles`): a node checks against it that the
    aggregators a spec names are heavy nodes, from signed data, not from the spec."""

    __slots__ = ("_members", "_roles", "network")

    def __init__(
        self,
        network: str,
        members: Mapping[str, PublicIdentity],
        roles: Mapping[str, Role] | None = None,
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
        self.network = network
        self._members = MappingProxyType(checked)
        self._roles = MappingProxyType(dict(sorted(roles.items()))) if roles is not None else None

    @property
    def members(self) -> Mapping[str, PublicIdentity]:
        return self._members

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
        if set(doc) - {"roles"} != {"version", "network", "members"}:
            raise DirectoryError(
                "directory must have exactly version, network, members (and roles); "
                f"got {sorted(doc)}"
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
        return cls(doc["network"], members, roles)

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

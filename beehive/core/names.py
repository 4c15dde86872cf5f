"""The one rule for names: node aliases, handler names, topology names.

A name becomes a file name (`keys/<alias>.key`), a NATS subject token
(`beehive.<network>.inbox.<alias>`) and a supervisord program name, so "../x",
"a.b" or "A B" must never get that far. Every part checks names here.
"""

from __future__ import annotations

import re

from beehive.core.errors import BeehiveError

__all__ = ["ALIAS_PATTERN", "InvalidName", "check_name", "is_alias"]

ALIAS_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
_ALIAS_RE = re.compile(ALIAS_PATTERN)


class InvalidName(BeehiveError, ValueError):
    """A name that breaks ALIAS_PATTERN; the message says the rule."""


def is_alias(name: object) -> bool:
    return isinstance(name, str) and _ALIAS_RE.fullmatch(name) is not None


def check_name(name: object, what: str = "alias") -> str:
    """`name` if it is valid, else InvalidName saying what `what` must look like."""
    if not is_alias(name):
        raise InvalidName(
            f"{what} {name!r} is not valid: use 1-32 lowercase letters, digits, '-' or '_', "
            "starting with a letter"
        )
    assert isinstance(name, str)
    return name

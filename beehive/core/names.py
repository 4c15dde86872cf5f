"""The one rule for names: node aliases, handler names, topology names.

A name becomes a file name (`keys/<alias>.key`), a NATS subject token
(`beehive.<network>.inbox.<alias>`) and a supervisord program name, so "../x",
"a.b" or "A B" must never get that far. Every part checks names here.
"""

from __future__ import annotations

import re

from beehive.core.errors import BeehiveError

__all__ = [
    "ALIAS_PATTERN",
    "COMP_ID_PATTERN",
    "InvalidName",
    "check_name",
    "is_alias",
    "is_comp_id",
    "printable",
]

ALIAS_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
_ALIAS_RE = re.compile(ALIAS_PATTERN)
#: A computation id is what `new_comp_id` makes (uuid4 hex): 32 lowercase hex
#: digits. One arriving from the network becomes a file name and a log field, so
#: it is held to exactly that.
COMP_ID_PATTERN = r"^[0-9a-f]{32}$"
_COMP_ID_RE = re.compile(COMP_ID_PATTERN)
#: C0 and C1 control characters and DEL: what could forge a log line or reach a
#: terminal as an escape sequence.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class InvalidName(BeehiveError, ValueError):
    """A name that breaks ALIAS_PATTERN; the message says the rule."""


def is_alias(name: object) -> bool:
    return isinstance(name, str) and _ALIAS_RE.fullmatch(name) is not None


def is_comp_id(value: object) -> bool:
    return isinstance(value, str) and _COMP_ID_RE.fullmatch(value) is not None


def printable(text: str) -> str:
    """`text` with every control character escaped (`\\n`, `\\x1b`): one log line
    stays one line, and nothing in it drives the terminal that shows it."""
    return _CONTROL_RE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def check_name(name: object, what: str = "alias") -> str:
    """`name` if it is valid, else InvalidName saying what `what` must look like."""
    if not is_alias(name):
        raise InvalidName(
            f"{what} {name!r} is not valid: use 1-32 lowercase letters, digits, '-' or '_', "
            "starting with a letter"
        )
    assert isinstance(name, str)
    return name

"""Package attributes imported on first use (PEP 562), so importing a package is free.

Python runs a package's `__init__` for every one of its submodules: a package
that re-exported its names eagerly would make `hive --help` load pydantic,
cryptography and nats-py, and every node process load the CLI's dependencies.
Each package lists where its names live; `__getattr__` imports that module the
first time a name is asked for (type checkers see the names through the
package's `if TYPE_CHECKING:` imports).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, homes: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: name → the submodule that defines it."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{home}"), name)
        setattr(sys.modules[package], name, value)  # asked once: a plain attribute after
        return value

    return __getattr__

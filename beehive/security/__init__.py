"""Identities, the pinned directory, sealed envelopes and secret shares.

Trust comes only from files `hive up` generated (key files and directory.json);
nothing learned from the network can widen it. Depends on `beehive.core` only.
Names are imported on first use (`beehive._lazy`): a key file's path costs no
cryptography.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from beehive._lazy import lazy_exports

if TYPE_CHECKING:
    from beehive.security.directory import Directory, DirectoryError
    from beehive.security.envelope import (
        ENVELOPE_DOMAIN,
        REASONS,
        SPEC_DOMAIN,
        Opened,
        Opener,
        Rejected,
        seal,
        sign_spec,
        verify_spec,
    )
    from beehive.security.identity import (
        Identity,
        IdentityError,
        PublicIdentity,
        ensure_identity,
    )
    from beehive.security.shares import combine, split

_HOMES = {
    **dict.fromkeys(["Directory", "DirectoryError"], "directory"),
    **dict.fromkeys(
        [
            "ENVELOPE_DOMAIN",
            "REASONS",
            "SPEC_DOMAIN",
            "Opened",
            "Opener",
            "Rejected",
            "seal",
            "sign_spec",
            "verify_spec",
        ],
        "envelope",
    ),
    **dict.fromkeys(["Identity", "IdentityError", "PublicIdentity", "ensure_identity"], "identity"),
    **dict.fromkeys(["combine", "split"], "shares"),
}
__all__ = [
    "ENVELOPE_DOMAIN",
    "REASONS",
    "SPEC_DOMAIN",
    "Directory",
    "DirectoryError",
    "Identity",
    "IdentityError",
    "Opened",
    "Opener",
    "PublicIdentity",
    "Rejected",
    "combine",
    "ensure_identity",
    "seal",
    "sign_spec",
    "split",
    "verify_spec",
]
__getattr__ = lazy_exports(__name__, _HOMES)

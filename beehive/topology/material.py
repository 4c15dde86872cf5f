"""Public security material the compiler places into a plan.

Generating keys and certificates is I/O and happens once, in
`beehive.orchestrator.prepare`; the compiler gets only what it may put into files
(public keys, a signature, paths, a fingerprint), which keeps it pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from beehive.security.tls_ca import TlsFiles

__all__ = ["SecurityMaterial", "TlsFiles"]


@dataclass(frozen=True)
class SecurityMaterial:
    #: base64 Ed25519 public key every node pins to verify directory.json.
    operator_key: str
    #: The detached signature file of directory.json (directory.sig).
    directory_sig: bytes
    #: alias → public NATS user nkey (U…); embedded server only.
    nkeys: Mapping[str, str] = field(default_factory=dict)
    #: CA, server certificate and key for the embedded server's client port.
    tls: TlsFiles | None = None
    #: Public nkey (U…) of the `_admin` user that creates the stream; embedded only.
    admin_nkey: str | None = None
    #: The CA certificate nodes verify the server with (None: `tls.ca_file`). A
    #: multi-host participant has one but runs no server of its own.
    ca_file: Path | None = None
    #: Public files placed into the state folder as they are (relative path →
    #: bytes): a multi-host host's copies of `trust/ca.pem` and its server cert.
    files: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def client_ca(self) -> Path | None:
        """The CA a node's NATS connection trusts."""
        return self.ca_file if self.ca_file is not None else self.tls.ca_file if self.tls else None

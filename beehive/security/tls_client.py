"""What a client of the hive's NATS trusts, without the CA-making half of tls_ca.

Every node process and every health probe builds this context; making the CA
and certificates (`beehive.security.tls_ca`) needs cryptography's x509, which
a node never does, so it is not imported for them.
"""

from __future__ import annotations

import ssl
from pathlib import Path

__all__ = ["client_context"]


def client_context(ca_file: Path) -> ssl.SSLContext:
    """This CA only, verified strictly.

    VERIFY_X509_STRICT is Python 3.13's default; setting it on every version
    makes 3.11 and 3.12 refuse what 3.13 would, so no certificate passes here and
    fails there.
    """
    ctx = ssl.create_default_context(cafile=str(ca_file))
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    return ctx

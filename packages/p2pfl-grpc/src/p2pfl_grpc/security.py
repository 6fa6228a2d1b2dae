"""Transport security of the ``grpc`` transport: TLS, mutual TLS, or explicit plaintext.

Settings (protocol options of the transport, or the keys of its ``tls`` dict):

* ``ca``, ``cert``, ``key`` — paths of the shared CA certificate and this node's certificate
  and key (PEM), e.g. as written by ``p2pfl certs``; or ``certs_dir`` — a folder holding
  ``ca.pem``, ``<node_id>.pem`` and ``<node_id>.key``.
* ``mutual`` (default true) — require a certificate from every caller (mutual TLS). With
  it, the caller's certificate common name must equal the node id it claims.
* ``insecure: true`` — plaintext, for trusted networks only; logged as a warning.

There is no silent default: a transport given neither TLS files nor ``insecure: true``
refuses to start.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from p2pfl_grpc.addresses import DNS_NAME

log = logging.getLogger(__name__)

TLS_KEYS = {"ca", "cert", "key", "certs_dir", "mutual"}


class SecurityError(ValueError):
    """Security settings are missing, contradictory, or do not match the node (the text says why)."""


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


@dataclass(frozen=True)
class SecuritySettings:
    """What a transport was asked for; files are read only by :meth:`load` (at start)."""

    insecure: bool = False
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    mutual: bool = True

    @property
    def tls(self) -> bool:
        return not self.insecure

    @classmethod
    def from_params(
        cls,
        node_id: str,
        *,
        insecure: Any = False,
        tls: Mapping[str, Any] | None = None,
        **flat: Any,
    ) -> SecuritySettings:
        """Build the settings from protocol options (flat keys or a ``tls`` dict, not both)."""
        given = {k: v for k, v in flat.items() if v is not None}
        if tls:
            unknown = set(tls) - TLS_KEYS
            if unknown:
                raise SecurityError(f"tls: unknown keys {sorted(unknown)}; accepted: {sorted(TLS_KEYS)}")
            if given:
                raise SecurityError(f"give the TLS settings either flat ({sorted(given)}) or in 'tls', not both")
            given = {k: v for k, v in tls.items() if v is not None}
        mutual = _truthy(given.pop("mutual", True))
        if _truthy(insecure):
            files = sorted(k for k in given if k != "mutual")
            if files:
                raise SecurityError(f"insecure: true contradicts the TLS settings {files}")
            return cls(insecure=True)
        certs_dir = given.pop("certs_dir", None)
        if certs_dir is not None:
            folder = Path(str(certs_dir))
            given.setdefault("ca", str(folder / "ca.pem"))
            given.setdefault("cert", str(folder / f"{node_id}.pem"))
            given.setdefault("key", str(folder / f"{node_id}.key"))
        missing = [k for k in ("ca", "cert", "key") if not given.get(k)]
        if missing:
            raise SecurityError(
                "the grpc transport needs TLS files (ca, cert and key, or certs_dir; create them with "
                f"'p2pfl certs') or 'insecure: true' for plaintext; missing: {', '.join(missing)}"
            )
        if not DNS_NAME.match(node_id):
            raise SecurityError(
                f"node id {node_id!r} cannot be used with TLS: it must be a DNS name (letters, digits, '-', '.')"
            )
        return cls(False, str(given["ca"]), str(given["cert"]), str(given["key"]), mutual)

    def load(self, node_id: str) -> Credentials:
        """Read the files (at start) and check that the certificate names this node."""
        if self.insecure:
            log.warning(
                "%s: the grpc transport runs in PLAINTEXT (insecure: true): use TLS outside trusted networks", node_id
            )
            return Credentials(None, None, None, None, False)
        assert self.ca and self.cert and self.key
        ca, cert, key = (_read(p, what) for p, what in ((self.ca, "CA"), (self.cert, "certificate"), (self.key, "key")))
        names = certificate_names(cert)
        if node_id not in names:
            raise SecurityError(f"certificate {self.cert} is for {sorted(names)}, not for node {node_id!r}")
        return Credentials(ca, cert, key, names, self.mutual)


def _read(path: str, what: str) -> bytes:
    try:
        return Path(os.path.expanduser(path)).read_bytes()
    except OSError as exc:
        raise SecurityError(f"cannot read the TLS {what} file {path}: {exc.strerror}") from None


def certificate_names(pem: bytes) -> set[str]:
    """The common name and DNS names of a PEM certificate."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise SecurityError(f"not a PEM certificate: {exc}") from None
    names = {str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
    with contextlib.suppress(x509.ExtensionNotFound):
        names |= set(
            cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
        )
    return names


@dataclass(frozen=True)
class Credentials:
    """Loaded TLS material (all ``None`` for plaintext)."""

    ca: bytes | None
    cert: bytes | None
    key: bytes | None
    names: set[str] | None
    mutual: bool

    @property
    def tls(self) -> bool:
        return self.ca is not None

    def server(self) -> grpc.ServerCredentials | None:
        if not self.tls:
            return None
        assert self.key and self.cert
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)], root_certificates=self.ca, require_client_auth=self.mutual
        )

    def channel(self) -> grpc.ChannelCredentials | None:
        if not self.tls:
            return None
        return grpc.ssl_channel_credentials(self.ca, self.key, self.cert)

    def caller_identity(self, context: Any) -> str | None:
        """The common name of the caller's certificate (``None`` without mutual TLS)."""
        if not (self.tls and self.mutual):
            return None
        names = context.auth_context().get("x509_common_name") or [b""]
        return names[0].decode("utf-8", "replace")

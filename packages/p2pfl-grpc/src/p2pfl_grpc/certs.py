"""A certificate authority and per-node certificates for TLS / mutual TLS (``p2pfl certs``).

Every node gets its own key and a certificate signed by one shared CA. The node id is the
certificate's common name *and* a DNS subject alternative name: peers check it when they
dial a node (the TLS server name is the node id) and when a node calls them (mutual TLS),
so a node cannot speak for another. The hosts and IP addresses the node is reached at are
added as further SANs (they are checked on the very first contact, when only the address
of the peer is known).

Keys are ECDSA P-256, written unencrypted with mode 0600; keep the CA key off the nodes.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from p2pfl_grpc.addresses import DNS_NAME

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


class CertificateError(ValueError):
    """Certificates cannot be created as asked (the text says why)."""


@dataclass(frozen=True)
class NodeFiles:
    """Where one node's certificate and key were written."""

    node_id: str
    cert: Path
    key: Path
    hosts: tuple[str, ...]


def check_node_id(node_id: str) -> str:
    """Return ``node_id`` if it can be a certificate's DNS name, else raise :class:`CertificateError`."""
    if not DNS_NAME.match(node_id):
        raise CertificateError(
            f"node id {node_id!r} cannot be used with TLS: it must be a DNS name "
            "(letters, digits, '-' and '.', e.g. 'node-0')"
        )
    return node_id


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return x509.DNSName(host)


def _write(path: Path, data: bytes, private: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if private:  # create with 0600 from the start: the key is never readable by others
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, days: int
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate small clock differences
        .not_valid_after(now + dt.timedelta(days=days))
    )


def create_ca(folder: Path, name: str = "p2pfl CA", days: int = 3650) -> tuple[Path, Path]:
    """Create ``ca.pem`` and ``ca.key`` in ``folder``; returns their paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(subject, subject, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / CA_CERT, folder / CA_KEY
    _write(key_path, _key_pem(key), private=True)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), private=False)
    return cert_path, key_path


def load_ca(folder: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Read the CA of ``folder`` (created by :func:`create_ca`)."""
    cert = x509.load_pem_x509_certificate((folder / CA_CERT).read_bytes())
    key = serialization.load_pem_private_key((folder / CA_KEY).read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"{folder / CA_KEY} is not an EC private key")
    return cert, key


def issue_node_certificate(folder: Path, node_id: str, hosts: Iterable[str] = (), days: int = 825) -> NodeFiles:
    """Write ``<node_id>.pem`` and ``<node_id>.key`` signed by the CA of ``folder``.

    The certificate names ``node_id`` (CN and DNS SAN) and every host/IP of ``hosts`` (SANs);
    it is valid for both TLS server and client authentication.
    """
    check_node_id(node_id)
    ca_cert, ca_key = load_ca(folder)
    key = ec.generate_private_key(ec.SECP256R1())
    names = list(dict.fromkeys([node_id, *hosts]))  # de-duplicated, node id first
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id)])
    cert = (
        _builder(subject, ca_cert.subject, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in names]), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{node_id}.pem", folder / f"{node_id}.key"
    _write(key_path, _key_pem(key), private=True)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), private=False)
    return NodeFiles(node_id, cert_path, key_path, tuple(names[1:]))


def create_certificates(
    folder: str | os.PathLike[str],
    nodes: Mapping[str, Iterable[str]],
    ca_name: str = "p2pfl CA",
    days: int = 825,
) -> list[NodeFiles]:
    """Create (or reuse) the CA in ``folder`` and one certificate per node.

    Args:
        folder: output folder; an existing ``ca.pem``/``ca.key`` there is reused, so nodes can
            be added later.
        nodes: node id → hosts/IPs it is reached at.
        ca_name: common name of a new CA.
        days: validity of the node certificates.
    """
    path = Path(folder)
    for node_id in nodes:
        check_node_id(node_id)
    if not (path / CA_CERT).exists() or not (path / CA_KEY).exists():
        if (path / CA_CERT).exists() != (path / CA_KEY).exists():
            raise CertificateError(f"{path} holds only one of {CA_CERT} and {CA_KEY}; remove it or add the other")
        create_ca(path, ca_name)
    return [issue_node_certificate(path, node_id, hosts, days) for node_id, hosts in nodes.items()]

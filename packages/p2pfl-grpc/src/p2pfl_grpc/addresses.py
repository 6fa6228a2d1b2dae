"""Listen and advertised addresses of the ``grpc`` transport.

Accepted forms: ``host:port`` (IPv4 or a name), ``[v6]:port`` (IPv6), and ``unix:/path``
(a Unix socket). Port 0 binds a free port; the address reported after start carries the
bound one. A node bound to a wildcard (``0.0.0.0``, ``[::]``) must say where peers dial it
(``advertise``), because the wildcard itself cannot be dialed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_LISTEN = "127.0.0.1:0"
#: a DNS name; under TLS node ids must be one, because a peer's node id is the TLS server name checked
DNS_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
WILDCARDS = {"0.0.0.0", "::", ""}


class AddressError(ValueError):
    """An address is not in one of the accepted forms (the text says why)."""


@dataclass(frozen=True)
class Address:
    """A parsed address: ``host``/``port`` for TCP, ``path`` for a Unix socket."""

    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def is_unix(self) -> bool:
        return bool(self.path)

    @property
    def is_wildcard(self) -> bool:
        return not self.is_unix and self.host in WILDCARDS

    def with_port(self, port: int) -> Address:
        return self if self.is_unix else Address(self.host, port)

    def __str__(self) -> str:
        if self.is_unix:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_address(text: str, default_port: int | None = None) -> Address:
    """Parse ``host:port``, ``[v6]:port`` or ``unix:/path``.

    Args:
        text: the address.
        default_port: the port used when ``text`` has none (``None``: a port is required).
    """
    text = text.strip()
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if path.startswith("//"):  # unix:///abs/path is the URI form of unix:/abs/path
            path = path[2:]
        if not path:
            raise AddressError(f"{text!r}: a unix address needs a path, e.g. unix:/tmp/node.sock")
        return Address(path=path)
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise AddressError(f"{text!r}: missing ']' after the IPv6 address")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise AddressError(f"{text!r}: expected ':port' after ']'")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text:
        raise AddressError(f"{text!r}: write IPv6 addresses in brackets, e.g. [::1]:5000")
    if not port_text:
        if default_port is None:
            raise AddressError(f"{text!r}: a port is required (host:port, [v6]:port or unix:/path)")
        return Address(host, default_port)
    if not port_text.isdigit() or int(port_text) > 65535:
        raise AddressError(f"{text!r}: port {port_text!r} is not a number between 0 and 65535")
    return Address(host, int(port_text))


def advertised_address(bound: Address, advertise: str | None) -> str:
    """The address peers dial: ``advertise`` if given (its port defaults to the bound one)."""
    if advertise:
        adv = parse_address(advertise, default_port=0)
        if not adv.is_unix and adv.port == 0:
            adv = adv.with_port(bound.port)
        if adv.is_wildcard:
            raise AddressError(f"advertise={advertise!r}: a wildcard address cannot be dialed")
        return str(adv)
    if bound.is_wildcard:
        raise AddressError(
            f"listening on {bound} needs 'advertise', the address other nodes dial "
            f"(e.g. advertise: 'host-a:{bound.port}')"
        )
    return str(bound)

"""``p2pfl certs``: a CA and per-node certificates, checked with cryptography independently."""

from __future__ import annotations

import ipaddress
import stat

import click
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from p2pfl_grpc import plugin
from p2pfl_grpc.cli import certs

pytestmark = pytest.mark.framework


def _load(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_certs_command_writes_a_ca_and_node_certificates(tmp_path) -> None:
    out = tmp_path / "pki"
    result = CliRunner().invoke(certs, [str(out), "node-0=10.0.0.5,alpha.lan", "node-1", "--host", "beta.lan"])
    assert result.exit_code == 0, result.output
    ca = _load(out / "ca.pem")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for node_id, own in (("node-0", ["10.0.0.5", "alpha.lan"]), ("node-1", [])):
        cert = _load(out / f"{node_id}.pem")
        cert.verify_directly_issued_by(ca)  # raises if the CA did not sign it
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == node_id
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = san.get_values_for_type(x509.DNSName)
        ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
        assert dns[0] == node_id
        assert {"beta.lan", "localhost"} <= set(dns)
        assert {"127.0.0.1", "::1"} <= set(ips)
        for host in own:
            try:
                assert str(ipaddress.ip_address(host)) in ips
            except ValueError:
                assert host in dns
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usage)
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for key in ("ca.key", "node-0.key", "node-1.key"):
        assert stat.S_IMODE((out / key).stat().st_mode) == 0o600, key


def test_an_existing_ca_is_reused_to_add_nodes(tmp_path) -> None:
    runner = CliRunner()
    assert runner.invoke(certs, [str(tmp_path), "node-0", "--no-loopback"]).exit_code == 0
    before = (tmp_path / "ca.pem").read_bytes()
    assert runner.invoke(certs, [str(tmp_path), "node-7"]).exit_code == 0
    assert (tmp_path / "ca.pem").read_bytes() == before
    _load(tmp_path / "node-7.pem").verify_directly_issued_by(_load(tmp_path / "ca.pem"))
    no_loop = _load(tmp_path / "node-0.pem").extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert no_loop.get_values_for_type(x509.DNSName) == ["node-0"]


def test_invalid_node_ids_are_refused_with_a_clear_message(tmp_path) -> None:
    result = CliRunner().invoke(certs, [str(tmp_path), "node_0"])
    assert result.exit_code == 2
    assert "must be a DNS name" in result.output
    assert not (tmp_path / "ca.pem").exists()
    result = CliRunner().invoke(certs, [str(tmp_path), "node-0", "node-0"])
    assert result.exit_code == 2 and "listed twice" in result.output


def test_the_plugin_adds_the_command_to_the_cli() -> None:
    group = click.Group("p2pfl")
    plugin.p2pfl_register_commands(cli=group)
    assert group.commands["certs"] is certs

"""The federation's TLS material: a private CA and the aggregator's certificate.

Sites trust only this CA (`ca.crt`, sent to every site); the SuperLink presents
`server.pem`, valid for exactly the host names and addresses sites dial. ECDSA P-384
keys, as Flower's node keys, so one curve serves the whole federation.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedrad.common.keyfiles import refuse_existing, write_private, write_public
from fedrad.common.model_signing import SIGNING_KEY

VALID_DAYS = 825  # the longest a public CA may issue for; renew with a new `keys init`


@dataclass(frozen=True)
class FederationCertificates:
    """Where `keys init` puts the coordinator's TLS files."""

    folder: Path

    @property
    def ca_certificate(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca.key"

    @property
    def server_certificate(self) -> Path:
        return self.folder / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.folder / "server.key"

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.ca_certificate, self.ca_key, self.server_certificate, self.server_key)

    @property
    def serving(self) -> tuple[Path, ...]:
        """What the running aggregator needs: not the CA key, which can stay offline."""
        return (self.ca_certificate, self.server_certificate, self.server_key)


def subject_alternative_names(hosts: list[str]) -> list[x509.GeneralName]:
    """An IP address entry for each address, a DNS entry for each name."""
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def make_federation_certificates(folder: Path, hosts: list[str]) -> FederationCertificates:
    """Write a new CA and the aggregator's certificate for `hosts` into `folder`.

    Raises KeyFilesExist, before writing anything, if any of the files is already there.
    """
    paths = FederationCertificates(folder)
    refuse_existing(paths.files)
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    until = now + datetime.timedelta(days=VALID_DAYS)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "FedRad federation CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA384())
    )
    server_key = ec.generate_private_key(ec.SECP384R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.SubjectAlternativeName(subject_alternative_names(hosts)), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA384())
    )
    write_private(paths.ca_key, _private_pem(ca_key))
    write_private(paths.server_key, _private_pem(server_key))
    write_public(paths.ca_certificate, ca.public_bytes(serialization.Encoding.PEM))
    write_public(paths.server_certificate, server.public_bytes(serialization.Encoding.PEM))
    return paths


def _key_usage(signs_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not signs_certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def signing_key_of(certificates: FederationCertificates | None) -> Path | None:
    """The model-signing key `fedrad keys init` made beside the certificates; None if that
    folder has none (the aggregator then makes one in its results folder)."""
    if certificates is None:
        return None
    key = certificates.folder / SIGNING_KEY
    return key if key.is_file() else None

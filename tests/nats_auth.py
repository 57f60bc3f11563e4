"""Secured nats-servers for tests: a CA and a server certificate for 127.0.0.1, users, tokens, and
operator-mode JWTs with a `.creds` file, all made here (no nsc, no network)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import nkeys
from polling import wait_for
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sagactl.system.processes import free_port, nats_server_binary, port_open, stop_pid


# -- TLS -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Certificates:
    ca: Path
    cert: Path
    key: Path


def make_certificates(folder: Path) -> Certificates:
    """A throwaway CA and a server certificate it signed, valid for 127.0.0.1 and localhost."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sagactl test CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = Certificates(folder / "ca.pem", folder / "server.pem", folder / "server-key.pem")
    paths.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return paths


# -- operator-mode JWTs and .creds ---------------------------------------------------------------
def new_keys(prefix: int) -> nkeys.KeyPair:
    return nkeys.from_seed(nkeys.encode_seed(os.urandom(32), prefix))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def make_jwt(issuer: nkeys.KeyPair, subject: str, name: str, nats: dict[str, Any]) -> str:
    """A NATS JWT (v2): ed25519-nkey signed by `issuer`, as nsc would issue it."""
    claims: dict[str, Any] = {"iat": int(time.time()), "iss": issuer.public_key.decode(), "name": name,
                              "sub": subject, "nats": {**nats, "version": 2}}
    digest = hashlib.sha512(json.dumps({**claims, "jti": ""}).encode()).digest()[:32]
    claims["jti"] = base64.b32encode(digest).decode().rstrip("=")
    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = issuer.sign(f"{header}.{body}".encode())
    return f"{header}.{body}.{_b64(signature)}"


UNLIMITED = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True, "conn": -1,
             "leaf": -1, "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}


@dataclass(frozen=True)
class Operator:
    operator_jwt: str
    account_public: str
    account_jwt: str
    account: nkeys.KeyPair
    system_public: str
    system_jwt: str

    def server_settings(self) -> str:
        """Operator mode with an in-memory resolver holding our account and the system account."""
        return (f"operator: {self.operator_jwt}\nsystem_account: {self.system_public}\nresolver: MEMORY\n"
                f"resolver_preload: {{ {self.account_public}: {self.account_jwt}, {self.system_public}: {self.system_jwt} }}")

    def creds(self, path: Path, account: nkeys.KeyPair | None = None) -> Path:
        """A user's `.creds` file; signed by another account's key it is refused by the server."""
        user = new_keys(nkeys.PREFIX_BYTE_USER)
        signer = account or self.account
        user_jwt = make_jwt(signer, user.public_key.decode(), "sagactl-test",
                            {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1})
        path.write_text(
            f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
            f"-----BEGIN USER NKEY SEED-----\n{user.seed.decode()}\n------END USER NKEY SEED------\n"
        )
        return path


def make_operator() -> Operator:
    operator = new_keys(nkeys.PREFIX_BYTE_OPERATOR)
    account = new_keys(nkeys.PREFIX_BYTE_ACCOUNT)
    operator_jwt = make_jwt(operator, operator.public_key.decode(), "sagactl-test-operator", {"type": "operator"})
    account_public = account.public_key.decode()
    account_jwt = make_jwt(operator, account_public, "SAGA", {"type": "account", "limits": UNLIMITED})
    system = new_keys(nkeys.PREFIX_BYTE_ACCOUNT)
    system_public = system.public_key.decode()
    system_jwt = make_jwt(operator, system_public, "SYS", {"type": "account"})
    return Operator(operator_jwt, account_public, account_jwt, account, system_public, system_jwt)


# -- a server -------------------------------------------------------------------------------------
@dataclass
class SecuredServer:
    port: int
    folder: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def run_server(folder: Path, settings: str) -> Iterator[SecuredServer]:
    """A JetStream nats-server on a free loopback port with `settings` (auth, tls) added."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = folder / "server.conf"
    config.write_text(f'listen: "127.0.0.1:{port}"\njetstream {{ store_dir: "{folder / "store"}" }}\n{settings}\n')
    log = folder / "server.log"
    process = subprocess.Popen([nats_server_binary(), "-c", str(config), "-l", str(log)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:

        def listening() -> bool:
            assert process.poll() is None, f"nats-server exited at start: {log.read_text() if log.exists() else ''}"
            return port_open(port)

        wait_for(listening, "nats-server to open its port", 10, every=0.02)
        yield SecuredServer(port, folder)
    finally:
        stop_pid(process.pid)
        process.wait(timeout=5)

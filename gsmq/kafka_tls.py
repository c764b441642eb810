"""TLS material for the embedded Apache Kafka: a generated CA and one broker certificate (openssl).

The broker certificate names 127.0.0.1 and localhost, serves the TLS listeners and is
also the brokers' client certificate between themselves (mutual TLS), so its subject
`CN=gsmq-broker` is the brokers' own principal.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

BROKER_PRINCIPAL = "User:CN=gsmq-broker"


class TlsError(RuntimeError):
    """The certificates could not be made."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the CA (for clients' `ssl.ca.location`), the broker's certificate chain and key."""

    ca: Path
    cert: Path
    key: Path
    keystore: Path  # key then certificate chain, in one PEM file, as Kafka's PEM keystore reads it


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise TlsError("no openssl on PATH (it makes the embedded broker's certificates)")
    run = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise TlsError(f"openssl {args[0]} failed: {run.stderr.strip()[-300:]}")


def make_tls(folder: Path, days: int = 3650) -> TlsFiles:
    """A CA and a broker certificate in `folder` (kept when already there)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(folder / "ca.pem", folder / "broker.pem", folder / "broker.key", folder / "broker-keystore.pem")
    if files.keystore.exists():
        return files
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", str(days),
             "-subj", "/CN=gsmq-test-ca", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker-rsa.key", "-out", "broker.csr",
             "-subj", "/CN=gsmq-broker", cwd=folder)
    (folder / "broker.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nbasicConstraints=CA:FALSE\n")
    _openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "broker.pem", "-days", str(days), "-extfile", "broker.ext", cwd=folder)
    # Kafka's PEM keystore wants a PKCS#8 key.
    _openssl("pkcs8", "-topk8", "-nocrypt", "-in", "broker-rsa.key", "-out", "broker.key", cwd=folder)
    files.keystore.write_text(files.key.read_text() + files.cert.read_text() + files.ca.read_text())
    for scratch in ("broker-rsa.key", "broker.csr", "broker.ext", "ca.srl"):
        (folder / scratch).unlink(missing_ok=True)
    return files

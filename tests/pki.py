"""Test certificates: a certificate authority and one server certificate it signed, made with
the `openssl` command line (Debian's ca-certificates brings it: missing, it is a broken machine,
not a skip)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    cert_file: Path
    key_file: Path


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr


def make_pki(folder: Path, common_name: str, alt_name: str) -> Pki:
    """A CA and a server certificate for `common_name`, valid for `alt_name` only
    (`DNS:name` or `IP:address`), in `folder`."""
    assert shutil.which("openssl"), "the openssl command is needed to make test certificates"
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=Switchboard test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr",
             "-subj", f"/CN={common_name}", cwd=folder)
    (folder / "ext.cnf").write_text(f"subjectAltName={alt_name}\n"
                                    "basicConstraints=CA:FALSE\n"
                                    "keyUsage=critical,digitalSignature\n"
                                    "extendedKeyUsage=serverAuth\n"
                                    "subjectKeyIdentifier=hash\n"
                                    "authorityKeyIdentifier=keyid\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf",
             cwd=folder)
    return Pki(folder / "ca.crt", folder / "server.crt", folder / "server.key")

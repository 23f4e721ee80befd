"""
A private OpenLDAP slapd on loopback for the LDAP backend tests: its own
config, schema for the Active Directory attributes we look users up by,
an mdb database filled with slapadd, and StartTLS with a test certificate.
Started and stopped by PID.
"""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.tls.store import make_self_signed
from tests.integration.gatewayproc import free_port, stop_process, wait_for_port

# sAMAccountName, userPrincipalName and proxyAddresses as Active Directory has
# them, under a test-only OID arc (the full AD schema needs half of AD).
AD_SCHEMA = """
attributetype ( 1.3.6.1.4.1.99999.1.1 NAME 'sAMAccountName' EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.1.2 NAME 'userPrincipalName' EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.1.3 NAME 'proxyAddresses' EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
objectclass ( 1.3.6.1.4.1.99999.2.1 NAME 'adUser' AUXILIARY MAY ( sAMAccountName $ userPrincipalName $ proxyAddresses ) )
"""

BASE_DN = "dc=corp,dc=example"
ADMIN_DN, ADMIN_PASSWORD = f"cn=admin,{BASE_DN}", "admin-secret"

DATA = f"""dn: {BASE_DN}
objectClass: dcObject
objectClass: organization
o: Corp
dc: corp

dn: cn=Scanner One,{BASE_DN}
objectClass: inetOrgPerson
objectClass: adUser
cn: Scanner One
sn: One
uid: scanner1
sAMAccountName: scanner1
userPrincipalName: scanner1@corp.example
mail: scanner1@corp.example
proxyAddresses: SMTP:scanner1@corp.example
proxyAddresses: smtp:scans@apps.corp.example
proxyAddresses: X500:/o=corp/cn=scanner1
userPassword: {{password}}
"""


class Slapd:
    def __init__(self, directory: Path, slapd: str, slapadd: str, password: str) -> None:
        self.directory = directory
        self.slapd, self.slapadd = slapd, slapadd
        self.password = password
        self.port = free_port()
        self.ldaps_port = free_port()
        self.ca_file = directory / "ldap-cert.pem"
        self.process: subprocess.Popen | None = None

    def _write(self) -> Path:
        d = self.directory
        (d / "db").mkdir(parents=True, exist_ok=True)
        pem = make_self_signed("CN=localhost", ("localhost",), datetime.datetime.now(datetime.UTC))
        cert = x509.load_pem_x509_certificate(pem[pem.index(b"-----BEGIN CERTIFICATE") :])
        self.ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (d / "ldap-key.pem").write_bytes(pem[: pem.index(b"-----BEGIN CERTIFICATE")])
        (d / "ad.schema").write_text(AD_SCHEMA)
        conf = d / "slapd.conf"
        conf.write_text(f"""
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include {d}/ad.schema
pidfile {d}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCertificateFile {self.ca_file}
TLSCertificateKeyFile {d}/ldap-key.pem
database mdb
suffix "{BASE_DN}"
rootdn "{ADMIN_DN}"
rootpw {ADMIN_PASSWORD}
directory {d}/db
""")
        (d / "data.ldif").write_text(DATA.format(password=self.password))
        return conf

    def start(self) -> Slapd:
        conf = self._write()
        subprocess.run([self.slapadd, "-f", str(conf), "-l", str(self.directory / "data.ldif")], check=True, capture_output=True)
        # -d 0: stay in the foreground, so the PID we hold is slapd's.
        self.process = subprocess.Popen(
            [self.slapd, "-f", str(conf), "-h", f"ldap://127.0.0.1:{self.port}/ ldaps://127.0.0.1:{self.ldaps_port}/", "-d", "0"],
            stdout=subprocess.DEVNULL, stderr=open(self.directory / "slapd.log", "wb"),  # noqa: SIM115 (slapd writes to it until it stops)
        )
        wait_for_port(self.port, process=self.process)
        wait_for_port(self.ldaps_port, process=self.process)
        return self

    def stop(self) -> None:
        stop_process(self.process)

import subprocess
import sys

import pytest

from gateway.sign.dkimfield import from_domain


@pytest.mark.parametrize("header, domain", [
    (b"From: Printer <printer01@Corp.Example>\r\n", "corp.example"),
    (b"From: a@corp.example, b@other.example\r\n", None),
    (b"Subject: none\r\n", None),
    (b"From: a@corp.example\r\nFrom: b@other.example\r\n", None),
])
def test_the_signing_domain_is_the_one_header_from(header, domain):
    assert from_domain(header) == domain


def test_a_node_without_dkim_selectors_never_loads_dkimpy():
    """dkimpy, dnspython and PyNaCl (about 4 MB a process) load at the first signing, not with the service."""
    code = (
        "import sys; import gateway.tap, gateway.service, gateway.intake, gateway.config; "
        "from gateway.sign.dkim import Signer; assert Signer().begin(b'From: a@corp.example\\r\\n') is None; "
        "print(sorted(m for m in ('dkim', 'dns', 'nacl') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

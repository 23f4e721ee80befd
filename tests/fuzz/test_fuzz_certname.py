"""
Property-based: Exchange's certificate identifiers (thumbprint or
<I>issuer<S>subject, gateway/tls/certname.py) parse to what was written or
fail with CertificateIdentifierError, nothing else.
"""

from hypothesis import example, given
from hypothesis import strategies as st

from gateway.tls.certname import (
    CertificateIdentifierError,
    DistinguishedName,
    TlsCertificateName,
    parse_certificate_identifier,
    parse_dn,
    parse_tls_certificate_name,
)

ATTRIBUTES = ["CN", "O", "OU", "C", "L", "S", "ST", "DC", "E", "cn", "commonName"]
values = st.text(alphabet=st.one_of(st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), blacklist_characters="<\\\""),
                                    st.sampled_from(",;+ =")), min_size=1, max_size=12).map(str.strip).filter(bool)


def written(value: str) -> str:
    return f'"{value}"' if any(c in value for c in ",;+") else value


dns = st.lists(st.tuples(st.sampled_from(ATTRIBUTES), values), min_size=1, max_size=4)


def text_of(pairs) -> str:
    return ", ".join(f"{k}={written(v)}" for k, v in pairs)


@given(dns, dns)
@example([("CN", "ß")], [("CN", "mail.corp.example")])
@example([("O", "ﬁrm")], [("CN", "x")])
def test_issuer_and_subject_are_read_as_written(issuer, subject):
    """Whatever the values (any script, commas in quotes), the name means its own issuer and subject."""
    name = parse_tls_certificate_name(f"<I>{text_of(issuer)}<S>{text_of(subject)}")
    assert name == TlsCertificateName(parse_dn(text_of(issuer)), parse_dn(text_of(subject)))
    assert [v for _, v in name.subject.attributes] == sorted(v.lower() for _, v in subject) or len(subject) > 1


@given(st.one_of(st.text(max_size=80), st.builds(lambda a, b: f"<I>{a}<S>{b}", st.text(max_size=30), st.text(max_size=30)),
                 st.text(alphabet="0123456789abcdefABCDEF ", max_size=50)))
@example("<I>CN=a<S>CN=b<s>CN=c")
@example('<I>CN="a<S>b"<S>CN=c')
def test_any_text_parses_or_says_why(text):
    try:
        result = parse_certificate_identifier(text)
    except CertificateIdentifierError as e:
        assert str(e)
        return
    assert isinstance(result, (str, TlsCertificateName))
    if isinstance(result, TlsCertificateName):
        assert isinstance(result.issuer, DistinguishedName) and result.issuer.attributes and result.subject.attributes

"""Exchange's certificate identifiers: every malformed form says what is wrong."""

import pytest

from gateway.tls.certname import CertificateIdentifierError, parse_certificate_identifier, parse_dn, parse_tls_certificate_name


def test_issuer_and_subject_compare_by_attributes_not_spelling():
    """Exchange's `S=` and OpenSSL's `ST=`, spaces, case and order do not matter."""
    a = parse_tls_certificate_name("<I>CN=Corp CA, DC=corp, DC=example<S>CN=mail.corp.example, O=Corp, S=WA, C=US")
    b = parse_tls_certificate_name("<i>dc=example,dc=corp,cn=corp ca<s>C=US;ST=WA;O=Corp;commonName=MAIL.corp.example")
    assert a == b
    assert str(a.subject) == "C=us, CN=mail.corp.example, O=corp, ST=wa"


def test_quoted_values_may_hold_commas():
    dn = parse_dn('CN=mail.corp.example, O="Corp, Inc."')
    assert ("O", "corp, inc.") in dn.attributes


def test_a_thumbprint_is_normalised():
    assert parse_certificate_identifier("0d69 07d9 b414 9665 4263 aa0d 932c ffa7 7539 9518") == "0D6907D9B41496654263AA0D932CFFA775399518"


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "the certificate name is empty (expected <I>issuer<S>subject)"),
        ("CN=mail.corp.example", "expected <I>issuer<S>subject (e.g. <I>CN=Corp CA, DC=corp, DC=example<S>CN=mail.corp.example) or a 40-digit thumbprint"),
        ("<S>CN=mail.corp.example", "the issuer part <I>... is missing (expected <I>issuer<S>subject)"),
        ("<I>CN=Corp CA", "the subject part <S>... is missing (expected <I>issuer<S>subject)"),
        ("x<I>CN=Corp CA<S>CN=mail", "the name must start with <I> (found text before <I>)"),
        ("<I><S>CN=mail", "the issuer is empty"),
        ("<I>CN=Corp CA<S>", "the subject is empty"),
        ("<I>CN=Corp CA<S>CN=a<S>CN=b", "<I> and <S> may each appear only once"),
        ("<I>CN=Corp CA<S>mail.corp.example", "the subject component 'mail.corp.example' has no '=' (expected e.g. CN=mail.corp.example)"),
        ("<I>CN=Corp CA,,O=x<S>CN=mail", "the issuer 'CN=Corp CA,,O=x' has an empty component (two commas in a row, or a trailing comma)"),
        ("<I>CN=Corp CA<S>CN=mail, XY=1", "the subject has an unknown attribute 'XY' (known: C, CN, DC, E, G, GN, L, O, OU, S, SN, ST, T, ...)"),
        ("<I>CN=Corp CA<S>CN=", "the subject attribute CN= has no value"),
        ('<I>CN="Corp CA<S>CN=mail', "in the issuer: a double quote is not closed"),
        ("0D6907D9B41496654263AA0D932C", "a thumbprint has 40 hex digits, this one has 28"),
    ],
)
def test_each_malformed_identifier_says_what_is_wrong(text, message):
    with pytest.raises(CertificateIdentifierError) as e:
        parse_certificate_identifier(text)
    assert str(e.value) == message


def test_letters_whose_upper_case_is_longer_do_not_shift_the_subject():
    """Found by tests/fuzz/test_fuzz_certname.py: "ß".upper() is "SS", and the <S> position was taken from the upper-cased text."""
    name = parse_tls_certificate_name("<I>CN=Straße CA, O=ﬁrm<S>CN=mail.corp.example")
    assert str(name.issuer) == "CN=straße ca, O=ﬁrm" and str(name.subject) == "CN=mail.corp.example"

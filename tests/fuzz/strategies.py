"""Inputs a hostile peer would send: built from the pieces parsers split on, so examples reach deep."""

from hypothesis import strategies as st

# The characters SMTP address and command parsers split or decide on.
SPECIAL = '<>@"\\:,.%!()[] \t\r\n=+-/;'
atoms = st.text(alphabet=st.sampled_from("abcXYZ019-_'*$#~`{}^?"), min_size=1, max_size=6)
labels = st.one_of(st.sampled_from(["corp", "example", "outside", "mail", "CORP", "xn--bcher-kva"]), atoms)
domains = st.lists(labels, min_size=1, max_size=4).map(".".join)
accepted_like = st.sampled_from(["corp.example", "Corp.Example", "sub.corp.example", "corp.example.", "corp.example.evil.example",
                                 "evil.example", "[127.0.0.1]", "[IPv6:::1]", "localhost"])


def tricky_text(max_size: int = 40):
    """Text mostly of the characters that matter, some of anything."""
    return st.text(alphabet=st.one_of(st.sampled_from(SPECIAL + "abc.@"), st.characters()), max_size=max_size)


@st.composite
def addresses(draw):
    """Addresses as a relay-trickster writes them: quoted parts, routing characters, source routes, literals."""
    local = draw(st.one_of(
        atoms,
        st.lists(atoms, min_size=1, max_size=3).map(".".join),
        tricky_text(12).map(lambda t: '"' + t + '"'),
        st.builds(lambda a, b, sep: a + sep + b, atoms, atoms, st.sampled_from(["%", "!", "@", '"@"', "\\@"])),
        tricky_text(12),
    ))
    domain = draw(st.one_of(accepted_like, domains, tricky_text(12)))
    address = f"{local}@{domain}"
    if draw(st.booleans()):
        route = draw(st.lists(st.one_of(accepted_like, domains), min_size=1, max_size=2))
        address = ",".join("@" + r for r in route) + ":" + address
    return address


parameters = st.lists(
    st.one_of(
        st.sampled_from(["SIZE=100", "SIZE=", "SIZE=-1", "SIZE=99999999999999999999", "BODY=8BITMIME", "BODY=7BIT",
                         "BODY=BINARYMIME", "SMTPUTF8", "AUTH=<>", "AUTH=a+2Bb", "RET=HDRS", "ENVID=x", "NOTIFY=NEVER",
                         "ORCPT=rfc822;a@b", "=x", "X", "SIZE=1=2"]),
        tricky_text(15),
    ),
    max_size=3,
).map(" ".join)

"""The header firewall on its own: who is filtered, and that it never holds more than a header's worth."""

from gateway import testing
from gateway.headerfirewall import HeaderFirewall, firewalled
from gateway.policy.rights import GROUP_RIGHTS, PermissionGroup, Right


def test_only_sessions_without_the_rights_are_filtered():
    txn = object()
    assert firewalled(txn, GROUP_RIGHTS[PermissionGroup.EXCHANGE_SERVERS], 1000) is txn
    for group in (PermissionGroup.ANONYMOUS_USERS, PermissionGroup.EXCHANGE_USERS, PermissionGroup.PARTNERS):
        assert isinstance(firewalled(txn, GROUP_RIGHTS[group], 1000), HeaderFirewall)
    assert Right.ACCEPT_ORGANIZATION_HEADERS in GROUP_RIGHTS[PermissionGroup.EXCHANGE_SERVERS]


def test_a_header_past_the_size_limit_is_passed_on_not_held():
    """Past max_header_size the message is refused anyway (552 5.3.4): the filter stops buffering and passes bytes on."""
    inner = testing.FakeTransaction(testing.FakeHandler(), None, None)
    fw = HeaderFirewall(inner, (b"x-ms-exchange-organization-",), 64)
    fw.write(b"Subject: s\r\n")
    assert inner.body == b""  # the field may still get continuation lines
    fw.write(b"X-Long: " + b"a" * 100)
    assert inner.body == b"Subject: s\r\nX-Long: " + b"a" * 100
    fw.write(b"\r\nbody\r\n")
    fw.finish()
    assert inner.body.endswith(b"body\r\n") and inner.finished

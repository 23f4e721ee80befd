"""Address walking order: groups kept, a name's addresses rotated, bad ones last until their penalty ends."""

from twisted.internet.task import Clock

from gateway.config import HostPort
from gateway.deliver.health import AddressHealth

A, B, C, D = (HostPort(f"192.0.2.{i}", 25) for i in range(1, 5))


def test_rotation_inside_a_group_and_group_order_kept():
    h = AddressHealth(Clock())
    assert h.order([[A, B, C], [D]]) == [A, B, C, D]
    assert h.order([[A, B, C], [D]]) == [B, C, A, D]
    assert h.order([[A, B, C], [D]]) == [C, A, B, D]


def test_bad_addresses_go_last_until_the_penalty_is_over():
    clock = Clock()
    h = AddressHealth(clock, penalty=60)
    h.mark_bad(A)
    assert h.order([[A], [B]]) == [B, A]
    clock.advance(60)
    assert h.order([[A], [B]]) == [A, B]
    h.mark_bad(B)
    h.mark_good(B)
    assert h.order([[A], [B]]) == [A, B]

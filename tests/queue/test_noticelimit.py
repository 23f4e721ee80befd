"""The per-sender-domain limit on notices: counted per hour, and its table bounded."""

from twisted.internet.task import Clock

from gateway.queue.noticelimit import NoticeLimit


def test_a_domain_gets_its_limit_per_hour_then_nothing_until_the_hour_moves_on():
    clock = Clock()
    limit = NoticeLimit(clock, 3)
    assert [limit.allow(f"u{i}@victim.example") for i in range(5)] == [True, True, True, False, False]
    assert limit.allow("someone@other.example")
    clock.advance(3600)
    assert limit.allow("u9@VICTIM.example")


def test_unlimited_and_the_table_bound():
    assert all(NoticeLimit(Clock(), None).allow("a@b.example") for _ in range(1000))
    limit = NoticeLimit(Clock(), 1, max_domains=50)
    for i in range(500):
        limit.allow(f"a@forged{i}.example")
    assert len(limit._sent) == 50

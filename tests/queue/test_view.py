"""Get-Queue and Get-Message views over the scheduler's messages."""

from types import SimpleNamespace

from gateway.envelope import Envelope, Recipient, RecipientState
from gateway.queue import view


def scheduler(messages, in_delivery=(), suspended=()):
    queues = {"a@corp.example": "Mailbox Delivery", "b@outside.example": "outside.example", "c@partner.example": "Partner"}
    return SimpleNamespace(
        messages={e.queue_id: e for e in messages}, in_delivery=set(in_delivery), suspended=set(suspended),
        queue_of=lambda address, envelope=None: queues[address],
        router=SimpleNamespace(send_connectors=(SimpleNamespace(name="Partner"),)),
    )


def env(qid, *rcpts, attempts=0, reply=None, next_attempt=0.0):
    recipients = tuple(Recipient(r, RecipientState.PENDING, attempts, reply) for r in rcpts)
    return Envelope(qid, int(qid), f"<{qid}@x>", "app@corp.example", recipients, 1_795_000_000.0, 100, attempts=attempts,
                    next_attempt=next_attempt, subject=f"s{qid}")


def test_queues_by_next_hop_with_status_and_delivery_type():
    s = scheduler(
        [env("1", "a@corp.example"), env("2", "b@outside.example", "c@partner.example", attempts=1, reply="451 busy", next_attempt=1_795_000_900.0),
         env("3", "c@partner.example")],
        in_delivery={"1"}, suspended={"Partner"},
    )
    rows = {q["Name"]: q for q in view.queues(s, "EXSERVER")}
    assert (rows["Mailbox Delivery"]["Status"], rows["Mailbox Delivery"]["DeliveryType"]) == ("Active", "SmtpDeliveryToMailbox")
    assert (rows["outside.example"]["Status"], rows["outside.example"]["DeliveryType"], rows["outside.example"]["LastError"]) == (
        "Retry", "DnsConnectorDelivery", "451 busy")
    assert rows["outside.example"]["NextRetryTime"] == "2026-11-18T11:21:40.000Z"
    assert (rows["Partner"]["Status"], rows["Partner"]["DeliveryType"], rows["Partner"]["MessageCount"]) == (
        "Suspended", "SmartHostConnectorDelivery", 2)
    assert rows["Partner"]["Identity"] == "EXSERVER\\Partner"


def test_messages_of_one_queue():
    s = scheduler([env("1", "a@corp.example"), env("3", "c@partner.example")], suspended={"Partner"})
    (m,) = view.messages(s, "Partner")
    assert (m["Identity"], m["Status"], m["Subject"], m["Queue"], m["Recipients"]) == ("3", "Suspended", "s3", "Partner", ["c@partner.example"])
    assert [m["Identity"] for m in view.messages(s)] == ["1", "3"]

"""The message tracking log: Exchange's fields, CSV quoting, and the search behind `exgateway track`."""

import csv

from twisted.internet.task import Clock

from gateway.envelope import Envelope, Recipient
from gateway.logs.tracking import FIELDS, Query, TrackingLog, search

ENV = Envelope("7", 7, "<7@mail.corp.example>", "app@corp.example", (Recipient("a@outside.example"), Recipient("b@outside.example")),
               0.0, 1234, client_ip="10.1.2.3", helo="app01", connector="EXSERVER\\Client Frontend",
               auth="app@corp.example", subject='Invoice, "final"')


def test_events_are_exchange_csv_lines(tmp_path):
    clock = Clock()
    clock.advance(1_795_000_000)
    log = TrackingLog(tmp_path, clock, "mail.corp.example")
    log.event("RECEIVE", "SMTP", ENV, ["a@outside.example", "b@outside.example"], server_ip="127.0.0.1")
    clock.advance(1.5)
    log.event("FAIL", "SMTP", ENV, ["b@outside.example"], ["550 5.1.1 unknown"], connector_id="Internet")
    log.close()
    (path,) = tmp_path.glob("MSGTRK*.LOG")
    text = path.read_bytes().decode()
    assert "#Log-type: Message Tracking Log\r\n" in text and f"#Fields: {','.join(FIELDS)}\r\n" in text
    rows = list(csv.DictReader([line for line in text.splitlines() if not line.startswith("#")], fieldnames=FIELDS))
    assert rows[0]["event-id"] == "RECEIVE" and rows[0]["recipient-address"] == "a@outside.example;b@outside.example"
    assert (rows[0]["client-ip"], rows[0]["client-hostname"], rows[0]["connector-id"]) == ("10.1.2.3", "app01", "EXSERVER\\Client Frontend")
    assert (rows[0]["message-subject"], rows[0]["message-info"], rows[0]["directionality"]) == ('Invoice, "final"', "AuthAs:app@corp.example", "Originating")
    assert (rows[1]["event-id"], rows[1]["recipient-status"], rows[1]["connector-id"]) == ("FAIL", "550 5.1.1 unknown", "Internet")


def test_search_filters_like_get_messagetrackinglog(tmp_path):
    clock = Clock()
    clock.advance(1_795_000_000)  # 2026-11-18T11:06:40Z
    log = TrackingLog(tmp_path, clock, "mail.corp.example")
    log.event("RECEIVE", "SMTP", ENV, ["a@outside.example", "b@outside.example"])
    clock.advance(3600)
    log.event("SEND", "SMTP", ENV, ["a@outside.example"], ["250 ok"])
    log.close()
    assert [r["event-id"] for r in search(tmp_path, Query(recipient="B@outside.example"))] == ["RECEIVE"]
    assert [r["event-id"] for r in search(tmp_path, Query(message_id="7@mail.corp.example", event="send"))] == ["SEND"]
    assert [r["event-id"] for r in search(tmp_path, Query(start="2026-11-18T12:00"))] == ["SEND"]
    assert [r["event-id"] for r in search(tmp_path, Query(sender="app@corp.example", end="2026-11-18T12:00"))] == ["RECEIVE"]
    assert search(tmp_path, Query(sender="other@corp.example")) == []


def test_inventory_of_clients_per_connector(tmp_path):
    from gateway.logs.tracking import inventory

    clock = Clock()
    clock.advance(1_795_000_000)
    log = TrackingLog(tmp_path, clock, "mail.corp.example")
    plain = Envelope("8", 8, "<8@x>", "printer@devices.example", (Recipient("a@outside.example"),), 0.0, 10, client_ip="192.0.2.10",
                     helo="printer", connector="EXSERVER\\Anon Relay")
    tls = Envelope("9", 9, "<9@x>", "app@corp.example", (Recipient("a@x.example"), Recipient("b@x.example")), 0.0, 10,
                   client_ip="10.1.2.3", helo="app01", connector="EXSERVER\\Client Frontend",
                   auth="app@corp.example", tls="TLSv1.3 TLS_AES_256_GCM_SHA384 0D69")
    log.event("RECEIVE", "SMTP", plain, ["a@outside.example"])
    clock.advance(60)
    log.event("RECEIVE", "SMTP", plain, ["a@outside.example"])
    log.event("RECEIVE", "SMTP", tls, ["a@x.example", "b@x.example"])
    log.event("SEND", "SMTP", tls, ["a@x.example"], ["250 ok"])
    log.close()
    rows = inventory(tmp_path)
    assert [(r["ClientIP"], r["User"], r["Connector"], r["Messages"], r["Recipients"], r["TLS"]) for r in rows] == [
        ("192.0.2.10", "-", "EXSERVER\\Anon Relay", 2, 2, "no"),
        ("10.1.2.3", "app@corp.example", "EXSERVER\\Client Frontend", 1, 2, "yes"),
    ]
    assert rows[0]["FirstSeen"] == "2026-11-18T11:06:40.000Z" and rows[0]["LastSeen"] == "2026-11-18T11:07:40.000Z"
    assert [r["ClientIP"] for r in inventory(tmp_path, connector="Anon Relay")] == ["192.0.2.10"]
    assert inventory(tmp_path, since="2026-11-19") == []

"""
Attack (on the promise "never lose a message that got a 250"): intake
routed each RCPT with the sender as the client gave it, while the envelope
stores the sender after [[rewrite]] and the scheduler routes from the
envelope. A send connector scoped with source_senders therefore matched at
RCPT and not at delivery (or the other way round): the printer's message got
250 and its first attempt failed with 550 5.4.4 and an NDR, never tried.
Now intake, the scheduler and `exgateway route test` all route with the
rewritten sender.
"""

from twisted.internet.defer import succeed

from gateway import testing
from gateway.admin.cli import main
from gateway.config import SendConnector
from gateway.domains import AcceptedDomains
from gateway.nexthop import NextHop
from gateway.queue.retry import RetryPolicy
from gateway.queue.scheduler import DeliveryScheduler
from gateway.rewrite import Rewriter, parse_rule
from gateway.route.router import Router
from tests.test_intake import Hub

PRINTER_RULE = parse_rule({"match": "root@printer01.local", "to": "printer01@corp.example"})
MESSAGE = b"MAIL FROM:<root@printer01.local>\r\nRCPT TO:<someone@outside.example>\r\nDATA\r\nSubject: toner\r\n\r\nlow\r\n.\r\n"


class Notices:
    def __init__(self):
        self.sent = []

    def notify(self, kind, envelope, recipients):
        self.sent.append((kind, [getattr(r, "address", r) for r in recipients]))
        return succeed(None)


def _hub(tmp_path, source_senders):
    hub = Hub(tmp_path)
    scoped = SendConnector(name="scanner-relay", address_spaces=("*",), smart_hosts=(), source_senders=source_senders)
    hub.handler.router = Router(AcceptedDomains(testing.config().accepted_domains), (scoped,))
    hub.handler.rewriter = Rewriter((PRINTER_RULE,))
    return hub, scoped


def test_the_printer_scoped_on_its_rewritten_address_is_accepted_and_delivered_through_its_connector(tmp_path):
    hub, scoped = _hub(tmp_path, ("printer01@corp.example",))
    lines = hub.send(b"EHLO fe.corp.example\r\n" + MESSAGE)
    assert lines[-1].startswith("250 2.6.0")
    (env,) = hub.scheduler.queued
    assert env.sender == "printer01@corp.example"

    deliverer, notices = testing.FakeDeliverer(), Notices()
    scheduler = DeliveryScheduler(hub.store, hub.handler.router, {NextHop.via(scoped): deliverer}, hub.clock, RetryPolicy(), 10, notifier=notices)
    scheduler.start([])
    scheduler.enqueue(env)
    for _ in range(5):
        hub.clock.advance(1)
    assert list(deliverer.delivered) == ["someone@outside.example"]
    assert deliverer.delivered["someone@outside.example"][0].endswith(b"Subject: toner\r\n\r\nlow\r\n")
    assert notices.sent == []  # no NDR


def test_a_connector_scoped_on_the_address_before_rewriting_refuses_at_rcpt_not_after_the_250(tmp_path):
    """The original address no longer routes: the client hears 550 5.4.4 at RCPT, and nothing is queued to bounce later."""
    hub, _ = _hub(tmp_path, ("root@printer01.local",))
    lines = hub.send(b"EHLO fe.corp.example\r\nMAIL FROM:<root@printer01.local>\r\nRCPT TO:<someone@outside.example>\r\n")
    assert lines[-1] == "550 5.4.4 SMTP; Unable to route recipient, no route to the recipient's domain"
    assert hub.scheduler.queued == []


CONFIG = """
[server]
name = "EXSERVER"
fqdn = "mail.corp.example"
var_dir = "{var}"
[[accepted_domains]]
domain = "corp.example"
[[receive_connectors]]
name = "Default"
role = "hub"
bindings = ["127.0.0.1:2525"]
remote_ip_ranges = ["127.0.0.1/32"]
permission_groups = ["ExchangeServers"]
auth_mechanisms = ["ExchangeServer"]
[[send_connectors]]
name = "Internet"
address_spaces = ["*"]
[[send_connectors]]
name = "scanner-relay"
address_spaces = ["*"]
smart_hosts = ["relay.corp.example:25"]
cost = 5
source_senders = ["printer01@corp.example"]
[[rewrite]]
match = "root@printer01.local"
to = "printer01@corp.example"
"""


def test_route_test_routes_the_rewritten_sender_as_delivery_will(tmp_path, capsys):
    path = tmp_path / "exgateway.toml"
    path.write_text(CONFIG.format(var=tmp_path / "var"))
    assert main(["--config", str(path), "route", "test", "--sender", "root@printer01.local", "--rcpt", "someone@outside.example"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "From <root@printer01.local> via (any receive connector):",
        "  sender rewritten: root@printer01.local -> printer01@corp.example (rule root@printer01.local -> printer01@corp.example, outbound)",
        "  RCPT <someone@outside.example>:",
        ('      route: send connector "scanner-relay"  domain type: not accepted  (outside.example is not an accepted domain; '
         "the message's source matches source_senders printer01@corp.example)"),
        "      next hop: smart hosts relay.corp.example:25",
        "      send connectors:",
        "        Internet       address space * matches, any source, cost 1; lost: a more specific address space, a closer source or a lower cost won",
        "        scanner-relay  address space * matches, source matches source_senders printer01@corp.example, cost 5  <- chosen",
    ]

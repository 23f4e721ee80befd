"""What the process log says at start and what it leaves out (gateway/startup.py)."""

import io

from twisted.logger import Logger, LogLevel, LogPublisher

from gateway.startup import chatter, key_values, log_observer


def legacy(text: str, namespace: str = "-") -> dict:
    return {"log_format": "{log_text}", "log_text": text, "log_namespace": namespace, "log_level": LogLevel.info}


def test_twisted_chatter_is_recognised_and_the_gateways_lines_are_not():
    for text in ("Starting factory <gateway.smtpd.factory.BindingFactory object at 0x7f11c8ac7590>",
                 "Stopping factory <twisted.web.server.Site object at 0x7f0>", "BindingFactory starting on 2525",
                 "Site starting on 'var/run/admin.sock'", "/etc/resolv.conf changed, reparsing",
                 "Resolver added ('10.255.255.53', 53) to server list", "DNSDatagramProtocol starting on 47329",
                 "Starting protocol <twisted.names.dns.DNSDatagramProtocol object at 0x7f11c8aff210>", "(UDP Port 47329 Closed)"):
        assert chatter(legacy(text)), text
    for text in ("listening on 127.0.0.1:25 (frontend): Default Frontend (no TLS)", "started worker 1 (pid 4242)",
                 "refused 6B0F: 550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain reason=relay"):
        assert not chatter(legacy(text, "exgateway")), text
    # A warning is never dropped, whatever it says.
    assert not chatter(dict(legacy("Site starting on 8025"), log_level=LogLevel.warn))


def test_the_gateways_own_lines_are_kept_without_being_formatted_for_the_check():
    """An exgateway line is never chatter: the filter does not format it (the file observer does, once)."""

    read = []

    class Watched(dict):
        def get(self, key, default=None):
            read.append(key)
            return super().get(key, default)

        def __getitem__(self, key):
            read.append(key)
            return super().__getitem__(key)

    for namespace in ("exgateway", "exgateway.smtpd"):
        assert not chatter(Watched(legacy("Site starting on 8025", namespace)))
    assert "log_format" not in read and "log_text" not in read
    assert chatter(Watched(legacy("Site starting on 8025", "exgatewayish")))
    assert "log_format" in read


def test_a_workers_twistd_lines_repeat_worker_0s_and_are_dropped():
    start = legacy("twistd 26.10.0 starting up.", "twisted.scripts._twistd_unix.UnixAppLogger")
    assert chatter(start, worker=1) and not chatter(start, worker=0)
    assert chatter(legacy("Main loop terminated.", "twisted.internet.base"), worker=2)


def test_the_filter_applies_to_standard_output_only():
    """-n or --logfile=- (the README, the systemd unit, the workers): filtered; a log file or syslog: twistd's own observer."""
    out = io.StringIO()
    observer = log_observer({"nodaemon": True, "logfile": None}, 0, out)
    publisher = LogPublisher(observer)
    Logger(namespace="exgateway", observer=publisher).info("listening on {binding}", binding="127.0.0.1:25")
    Logger(namespace="-", observer=publisher).info("BindingFactory starting on 25")
    assert out.getvalue().count("\n") == 1 and "listening on 127.0.0.1:25" in out.getvalue()
    assert log_observer({"nodaemon": False, "logfile": "-"}, 0) is not None
    assert log_observer({"nodaemon": True, "logfile": "/var/log/exgateway.log"}, 0) is None
    assert log_observer({"nodaemon": True, "logfile": None, "syslog": True}, 0) is None
    assert log_observer(None, 0) is None


def test_refusal_details_are_key_value_text():
    """Not a dict repr: values with spaces or quotes are quoted."""
    assert key_values({"reason": "relay to non-accepted domain", "recipient": "bob@else.example", "note": 'a "b"', "empty": ""}) == (
        'reason="relay to non-accepted domain" recipient=bob@else.example note="a \\"b\\"" empty=""')

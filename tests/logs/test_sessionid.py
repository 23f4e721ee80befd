"""Session ids: Exchange's hex form, never the same twice on one node, whichever worker serves."""

from gateway.logs import sessionid
from gateway.logs.sessionid import new_session_id, number_sessions_as


def test_the_workers_of_a_node_never_hand_out_the_same_session_id():
    try:
        taken = []
        for worker in range(3):
            number_sessions_as(worker, 3)
            taken += [new_session_id(1_795_000_000.0) for _ in range(4)]
        assert len(set(taken)) == 12
        assert taken[:2] == ["6AFD86C000000001", "6AFD86C000000004"]
        assert taken[4] == "6AFD86C000000002"
    finally:
        number_sessions_as(0, 1)
        assert sessionid.new_session_id(0.0) == "0000000000000001"

"""The frontend's spool on a full disk (issue 17, item 4): a clean 451 4.3.0 at the end of the message, no crash mid-DATA."""

import errno

import pytest

from gateway.errors import SMTPError
from gateway.proxy import FrontendTransaction, ProxyHandler


class Client:
    busy = False
    connected = True

    def __init__(self):
        self.commands = []

    def command(self, line):
        from twisted.internet.defer import succeed

        self.commands.append(line)
        return succeed(None)


class Pool:
    def __init__(self):
        self.released = []

    def release(self, client):
        self.released.append(client)


def test_a_spool_write_that_fails_gets_451_at_the_end_and_the_hub_connection_back(tmp_path):
    pool = Pool()
    txn = FrontendTransaction(ProxyHandler(pool, tmp_path), session=None, mail=None)
    txn.client = client = Client()
    txn.open_body()
    txn.write(b"Subject: x\r\n\r\n")

    def full(data):
        raise OSError(errno.ENOSPC, "No space left on device")

    txn.spool.write = full
    txn.write(b"y" * 1024)
    txn.write(b"z" * 1024)  # the rest of the body is read and dropped
    with pytest.raises(SMTPError) as e:
        txn.finish()
    assert str(e.value.reply) == "451 4.3.0 Temporary server error. Please try again later"
    assert e.value.log_fields["reason"] == "spooling the message failed: No space left on device"
    # The hub's transaction is reset and its connection kept for the next message.
    assert client.commands == ["RSET"] and pool.released == [client]

"""
A scripted hostile peer on loopback for the attack tests: it listens, and
runs a script (a function of the connected socket) for each connection in a
thread of its own, recording what it was sent. Stopped by `stop()`.
"""

from __future__ import annotations

import socket
import threading


class ScriptedPeer:
    def __init__(self, script, host: str = "127.0.0.1") -> None:
        self.script = script
        self.received: list[bytes] = []
        self.errors: list[BaseException] = []
        self.listener = socket.create_server((host, 0))
        self.port = self.listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._stopped = False
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    @property
    def connections(self) -> int:
        return len(self.received)

    def _accept(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.received.append(b"")
            index = len(self.received) - 1
            t = threading.Thread(target=self._run, args=(conn, index), daemon=True)
            self._threads.append(t)
            t.start()

    def _run(self, conn: socket.socket, index: int) -> None:
        peer = Conversation(conn, self, index)
        try:
            self.script(peer)
        except OSError:
            pass  # the gateway dropped the connection: often the point
        except BaseException as e:  # reported to the test
            self.errors.append(e)
        finally:
            conn.close()

    def stop(self) -> None:
        self._stopped = True
        self.listener.close()
        for t in self._threads:
            t.join(5)


class Conversation:
    """One connection as the script sees it: send bytes, read up to a marker."""

    def __init__(self, conn: socket.socket, peer: ScriptedPeer, index: int) -> None:
        self.conn = conn
        self.peer = peer
        self.index = index
        self.conn.settimeout(15)
        self._pending = b""

    def send(self, data: bytes) -> None:
        self.conn.sendall(data)

    def read_until(self, marker: bytes) -> bytes:
        """Everything up to and including `marker`; an OSError if the connection ends first."""
        while marker not in self._pending:
            chunk = self.conn.recv(65536)
            if not chunk:
                raise ConnectionResetError(f"closed before {marker!r}")
            self._pending += chunk
            self.peer.received[self.index] += chunk
        end = self._pending.index(marker) + len(marker)
        data, self._pending = self._pending[:end], self._pending[end:]
        return data

    def drain(self) -> None:
        """Read (and record) until the gateway closes the connection."""
        while True:
            chunk = self.conn.recv(65536)
            if not chunk:
                return
            self.peer.received[self.index] += chunk

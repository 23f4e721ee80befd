"""
The local admin API: HTTP + JSON on a UNIX socket that only its owner may use.

`exgateway queue ...` and `exgateway message ...` talk to the running hub
through it. A UNIX socket with mode 0600 (in a 0700 directory) means the
file system decides who may manage the queue: root and the service user,
nobody on the network. Requests:

    GET  /queues                       Get-Queue
    GET  /messages[?queue=NAME]        Get-Message
    POST /queues/retry?queue=NAME      Retry-Queue (attempt now)
    POST /queues/suspend?queue=NAME    Suspend-Queue (&also=1: even if this worker has no message for it yet)
    POST /queues/resume?queue=NAME     Resume-Queue (and attempt now)
    POST /messages/remove?id=ID[&ndr=1]  Remove-Message [-WithNDR]
    GET  /messages/export?id=ID        Export-Message (the raw message)
    POST /drain, /undrain              Set-ServerComponentState ... Draining / Active
    POST /reload                       re-read the config file (as SIGHUP): applied, or refused with its errors
    GET  /state                        whether the node drains, this process's id and config file
    GET  /metrics                      this process's Prometheus metrics (worker 0 gathers the others')
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from twisted.application.service import Service
from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.web import resource, server

from gateway.listenservice import ListeningService
from gateway.queue import view
from gateway.queue.store import body_bytes


def _arg(request, name: str) -> str | None:
    values = request.args.get(name.encode())
    return values[0].decode("utf-8", "replace") if values else None


def _json(request, status: int, body) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(body, indent=1).encode() + b"\n"


class AdminAPI(resource.Resource):
    isLeaf = True

    def __init__(self, scheduler, store, server_name: str, state=None, metrics=None, reload=None, config_path=None) -> None:
        super().__init__()
        # () -> the reload's outcome (gateway/reload.py), where this process passes reloads on (worker 0).
        self.reload = reload
        self.config_path = config_path
        # None on a frontend-only node: it holds no queue.
        self.scheduler = scheduler
        self.store = store
        self.server_name = server_name
        self.state = state
        # This process's Prometheus metrics, where the node keeps them (worker 0 gathers the others' here).
        self.metrics = metrics

    def render_GET(self, request):
        path = request.path.decode()
        if path == "/state":
            return _json(request, 200, {"draining": bool(self.state and self.state.draining), "pid": os.getpid(),
                                        "config": str(self.config_path) if self.config_path else None})
        if path == "/metrics" and self.metrics is not None:
            request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
            return generate_latest(self.metrics.registry)
        if self.scheduler is None:
            return _json(request, 404, {"error": "this node runs no hub: it has no queue"})
        if path == "/queues":
            return _json(request, 200, view.queues(self.scheduler, self.server_name))
        if path == "/messages":
            return _json(request, 200, view.messages(self.scheduler, _arg(request, "queue")))
        if path == "/messages/export":
            queue_id = _arg(request, "id") or ""
            if queue_id not in self.scheduler.messages:
                return _json(request, 404, {"error": f"no message {queue_id!r} in the queue"})
            request.setHeader(b"content-type", b"message/rfc822")
            return body_bytes(self.store.body_path(queue_id), self.scheduler.messages[queue_id].size)
        return _json(request, 404, {"error": f"no such resource {path}"})

    def render_POST(self, request):
        path = request.path.decode()
        if path in ("/drain", "/undrain") and self.state is not None:
            self.state.drain() if path == "/drain" else self.state.undrain()
            return _json(request, 200, {"draining": self.state.draining})
        if path == "/reload" and self.reload is not None:
            outcome = self.reload()
            return _json(request, 200 if outcome.get("applied") else 409, outcome)
        s = self.scheduler
        if s is None:
            return _json(request, 404, {"error": "this node runs no hub: it has no queue"})
        if path in ("/queues/retry", "/queues/suspend", "/queues/resume"):
            queue = _arg(request, "queue")
            known = {q["Name"] for q in view.queues(s, self.server_name)}
            # `also=1`: another worker of this node has the queue; hold (or release) it here too.
            if queue not in known and not (_arg(request, "also") == "1" and queue):
                return _json(request, 404, {"error": f"no queue {queue!r} (queues: {', '.join(sorted(known)) or 'none'})"})
            if path.endswith("suspend"):
                s.suspended.add(queue)
                return _json(request, 200, {"queue": queue, "status": "Suspended"})
            if path.endswith("resume"):
                s.suspended.discard(queue)
            return _json(request, 200, {"queue": queue, "retried": s.retry_now(queue)})
        if path == "/messages/remove":
            queue_id = _arg(request, "id") or ""
            if queue_id not in s.messages:
                return _json(request, 404, {"error": f"no message {queue_id!r} in the queue"})
            if queue_id in s.in_delivery:
                return _json(request, 409, {"error": f"message {queue_id} is being delivered right now; try again in a moment"})
            with_ndr = _arg(request, "ndr") == "1"
            s.remove(queue_id, with_ndr)
            return _json(request, 200, {"removed": queue_id, "ndr": with_ndr})
        return _json(request, 404, {"error": f"no such resource {path}"})


class _AfterPrivileges(ListeningService):
    """Listens in startService, once twistd has dropped to the service user, so the socket is that user's."""

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)


def admin_service(reactor, socket_path: Path, scheduler, store, server_name: str, state=None, metrics=None, reload=None,
                  config_path=None) -> ListeningService:
    """The API listening on `socket_path` (mode 0600, its directory 0700)."""
    site = server.Site(AdminAPI(scheduler, store, server_name, state, metrics, reload, config_path))
    site.noisy = False
    # No access-log line per command (a monitor polling `queue list` would fill
    # the log); what changes the queue is logged where it happens.
    site.log = lambda request: None  # type: ignore[method-assign]
    endpoint = UNIXServerEndpoint(reactor, str(socket_path), mode=0o600, wantPID=True)
    return _AfterPrivileges(endpoint, site)

"""
The queues as the admin commands show them (Get-Queue, Get-Message).

A queue is a next hop: "Mailbox Delivery", a smart-host send connector by
name, a destination domain for MX routing, or "Unreachable". Its identity is
`SERVER\\name`, stable across restarts because it is derived from the route,
not from a counter. A message is known by its internal id, which is also its
file name in the queue directory.
"""

from __future__ import annotations

from gateway.logs.rolling import iso_time
from gateway.nexthop import MAILBOX_QUEUE


def _delivery_type(name: str, scheduler) -> str:
    if name == MAILBOX_QUEUE:
        return "SmtpDeliveryToMailbox"
    if name == "Unreachable":
        return "Unreachable"
    if "." in name and not any(getattr(c, "name", None) == name for c in getattr(scheduler.router, "send_connectors", ())):
        return "DnsConnectorDelivery"
    return "SmartHostConnectorDelivery"


def queues(scheduler, server_name: str) -> list[dict]:
    found: dict[str, dict] = {}
    for envelope in scheduler.messages.values():
        for r in envelope.pending:
            name = scheduler.queue_of(r.address, envelope)
            q = found.setdefault(name, {"messages": set(), "active": False, "last_error": "", "next_retry": None})
            q["messages"].add(envelope.queue_id)
            q["active"] |= envelope.queue_id in scheduler.in_delivery
            if r.last_reply:
                q["last_error"] = r.last_reply
            if r.attempts and (q["next_retry"] is None or envelope.next_attempt < q["next_retry"]):
                q["next_retry"] = envelope.next_attempt
    for name in scheduler.suspended:
        found.setdefault(name, {"messages": set(), "active": False, "last_error": "", "next_retry": None})
    hops = scheduler.hops.hops if hasattr(scheduler, "hops") else {}
    out = []
    for name, q in sorted(found.items()):
        hop = hops.get(name)
        if hop is not None and hop.retry_at is not None:
            # The next hop itself is down (gateway/queue/hopqueue.py): its error and its one next try, not a message's.
            q["last_error"], q["next_retry"] = hop.last_error or q["last_error"], hop.retry_at
        in_retry = hop is not None and hop.retry_at is not None
        status = ("Suspended" if name in scheduler.suspended else "Retry" if in_retry
                  else "Active" if q["active"] else "Retry" if q["last_error"] else "Ready")
        out.append({
            "Identity": f"{server_name}\\{name}",
            "Name": name,
            "DeliveryType": _delivery_type(name, scheduler),
            "Status": status,
            "MessageCount": len(q["messages"]),
            "NextHopDomain": name,
            "LastError": q["last_error"],
            "NextRetryTime": iso_time(q["next_retry"]) if q["next_retry"] else "",
        })
    return out


def messages(scheduler, queue: str | None = None) -> list[dict]:
    out = []
    for envelope in sorted(scheduler.messages.values(), key=lambda e: e.internal_id):
        names = sorted({scheduler.queue_of(r.address, envelope) for r in envelope.pending})
        if queue is not None and queue not in names:
            continue
        last = next((r.last_reply for r in envelope.pending if r.last_reply), "")
        in_retry = hasattr(scheduler, "hops") and any(scheduler.hops.in_retry(n) for n in names)
        status = ("Active" if envelope.queue_id in scheduler.in_delivery
                  else "Suspended" if names and all(n in scheduler.suspended for n in names)
                  else "Retry" if last or in_retry else "Ready")
        out.append({
            "Identity": envelope.queue_id,
            "FromAddress": envelope.sender or "<>",
            "Status": status,
            "Size": envelope.size,
            "Subject": envelope.subject,
            "DateReceived": iso_time(envelope.received_at),
            "Queue": ", ".join(names),
            "Recipients": [r.address for r in envelope.pending],
            "LastError": last,
            "RetryCount": envelope.attempts,
        })
    return out

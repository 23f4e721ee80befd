"""
The seams between the stages a message goes through (DESIGN.md: listen ->
session/policy -> proxy or intake -> queue -> route -> deliver).

Each interface describes what the code on one side of a seam already asks of
the other, no more: they were read off the callers (gateway/smtpd/protocol.py
of a handler, gateway/intake.py and gateway/queue/scheduler.py of the store,
the router and the deliverers, gateway/smtpd/shutdown.py of the sessions).
Providers declare them with `@implementer`; tests/test_interfaces.py checks
each with `verifyObject`, and tests/contracts/ runs one set of assertions
against each real provider and its in-memory fake in gateway/testing.py, so
a fake that drifts from the real thing fails there, not in a test that
trusted it.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IMessageTransaction(Interface):
    """
    One message being received by a tier behind the SMTP session, from MAIL
    to its final reply: the hub's intake into the queue
    (gateway/intake.py) or the frontend's relay to a hub (gateway/proxy.py).
    The session calls these in SMTP order and turns any SMTPError they raise
    or fail with into the reply from the catalogue.
    """

    def add_recipient(recipient, dsn=None):
        """
        Accept or refuse one RCPT: `recipient` an Address, `dsn` its
        RecipientDSN or None. Returns an SMTPReply, or a Deferred firing
        with one; raises (or fails with) SMTPError to refuse it.
        """

    def open_body():
        """The body is about to come (DATA or the first BDAT chunk)."""

    def write(data):
        """Bytes of the body, dot-unstuffed, with CRLF line ends, in order; never the whole message at once."""

    def finish():
        """
        The body is complete: a Deferred firing with the final SMTPReply.
        A 250 means the message is durable (on a hub's disk, or accepted by
        a hub for the frontend); it fails with SMTPError otherwise.
        """

    def abort():
        """The session ended or reset before finish(): forget the message; nothing of it may be delivered."""


class IMessageHandler(Interface):
    """What an SMTP session hands each transaction to (the hub's intake, the frontend's proxy)."""

    def begin(session, mail):
        """A new transaction for MAIL FROM (`mail`, a MailFrom) in `session` (a Session): an IMessageTransaction."""


class IQueueEntry(Interface):
    """A message being written into the queue, before its commit."""

    queue_id = Attribute("The message's queue id (a string of digits, unique in its store).")
    size = Attribute("How many body bytes were written so far.")

    def write(data):
        """Append body bytes; a large body goes to disk as it arrives."""


class IQueueStore(Interface):
    """
    The hub's durable queue (gateway/queue/store.py): a committed message
    survives a crash until it is removed or set aside; blocking work runs
    in the store's thread, so calls that touch the disk return Deferreds
    or post their work.
    """

    directory = Attribute("The queue's directory (a Path): health and back pressure measure its file system.")
    highest_id = Attribute("The highest queue id seen by recover() (an int): new ids start above it.")

    def prepare():
        """Make the queue's directories (private) if they are missing."""

    def open_entry(new_id):
        """An IQueueEntry for a new message, its queue id from `new_id()` (a callable returning an int)."""

    def create(queue_id):
        """An IQueueEntry under a given queue id (delivery notices)."""

    def commit(entry, envelope):
        """Make the entry's body and `envelope` durable: a Deferred firing with None once the 250 may be sent."""

    def discard(entry):
        """Forget an entry that was never committed (a refused or aborted message)."""

    def exists(queue_id):
        """Whether a message is queued under `queue_id`."""

    def update(envelope):
        """Durably replace a queued message's envelope (new recipient states): a Deferred."""

    def remove(queue_id, reuse=True):
        """Drop a finished message (posted to the store's thread; nothing comes back)."""

    def set_failed(queue_id):
        """Move a message whose delivery failed for good out of the queue, kept for the admin."""

    def body_file(queue_id):
        """Where a queued message's body is read from, for a delivery attempt's StoredBody."""

    def body_path(queue_id):
        """body_file as a Path (admin views, notices)."""

    def recover():
        """At start: clean up what a crash left and return the Envelope of every committed message."""

    def adopt(other):
        """At start, before recover(): take in the messages of another queue directory; how many moved."""

    def stop():
        """At stop: give back what the store holds ready for new messages."""


class ISpareAllocator(Interface):
    """
    Queue files made ahead for new messages, and delivered messages' files
    taken back (gateway/queue/spares.py), for a QueueStore. take and
    replenish run in the reactor thread; retire in the store's thread.
    """

    def take():
        """The oldest ready spare (queue_id, fd open for writing, recycled: whether it held a message), or None."""

    def replenish(new_id):
        """Make more spares in the store's thread if few are left, under ids from `new_id()` (a callable returning an int)."""

    def retire(path):
        """A delivered message's queue file (a path string), its envelope file gone: keep it to reuse, or delete it."""

    def stop():
        """Delete every spare not taken and every file kept for reuse."""


class IRouter(Interface):
    """
    Where a recipient goes next (gateway/route/router.py): a
    gateway.nexthop.NextHop (`MAILBOX`, the mailbox store, or a send
    connector's hop), or nowhere (None: refused at RCPT with 550 5.4.4).
    """

    recipient_exists = Attribute(
        "Recipient validation the router consults for InternalRelay domains (address -> True/False/None), or None."
    )

    def route(recipient):
        """The NextHop for an Address (MAILBOX or a send connector's), or None."""

    def route_address(address):
        """route() for an address as the queue holds it (a string); None if it does not parse."""

    def decide(recipient):
        """The route for an Address with the accepted domain's type and one sentence why (a Decision)."""

    def send_connector(domain, catch_all=True):
        """The enabled send connector for `domain` (most specific address space, then lowest cost), or None."""


class IDeliverer(Interface):
    """
    Takes a queued message to one next hop (a gateway.nexthop.NextHop): the
    mailbox store (Maildir or an SMTP next hop) or a send connector's smart
    hosts or MX. gateway/deliver/registry.py picks the deliverer for a hop
    and closes them all at stop.
    """

    def deliver(envelope, recipients, body):
        """
        Deliver `body` (a StoredBody: `open()` gives its bytes) of `envelope`
        to `recipients` (address strings, a subset of its pending ones). A
        Deferred firing with {address: (RecipientState, reply text)} for
        every address given: DELIVERED with a 2xx reply, PENDING with a 4xx
        (tried again later) or FAILED with a 5xx. It does not fail as a
        whole for one recipient's trouble.
        """

    def close():
        """
        At stop: let go of kept connections and pools. One that keeps none
        (Maildir) does nothing; calling it twice is harmless.
        """


class ISession(Interface):
    """What a stop asks of an open SMTP session (gateway/smtpd/shutdown.py)."""

    def stop_gently():
        """Close now if idle (421 4.3.2), else after the message in progress; whether it was idle."""

    def stop_now():
        """421 4.3.2 and close, whatever it was doing (shutdown_grace is over)."""


class ISessionObserver(Interface):
    """Told of every SMTP session opening and closing in this process (today: the stop's session registry)."""

    stopping = Attribute("True once the process stops: new connections are turned away.")

    def add(session):
        """An ISession has opened."""

    def discard(session):
        """An ISession has closed (called once, for a session add() was told of)."""


class ISessionEvents(Interface):
    """
    What one SMTP session tells its observers (gateway/smtpd/observer.py):
    metrics and the receive protocol log. One observer per session, never
    None (NullObserver ignores everything), so the protocol code says what
    happened and never asks who listens. Not to be confused with
    ISessionObserver, the process's registry of open sessions.
    """

    def connected(session, peer_host):
        """The session (a Session) has begun; `peer_host` is the client's address as the transport gave it."""

    def command_received(line):
        """A command line (str) from the client; an AUTH initial response in it is a secret."""

    def secret_received():
        """An AUTH response line came in (never shown)."""

    def reply_sent(reply):
        """An SMTPReply was written to the client."""

    def refused(reply):
        """A 4xx or 5xx SMTPReply is being sent."""

    def tls_started(session, cert):
        """The TLS handshake completed with the certificate `cert` (session.tls says what was agreed)."""

    def authenticated(session, mechanism):
        """AUTH with `mechanism` succeeded: session.identity and session.rights are the new ones."""

    def node_authenticated(session):
        """Another gateway node proved the node secret: session.node names it."""

    def auth_failed(username, mechanism, outcome, why):
        """AUTH failed: `outcome` failure, locked_out or temporary_failure; `why` the cause, for the admin only."""

    def accepted():
        """A message got its 250 at the end of its data."""

    def closed(local):
        """The connection is gone; `local`: this side closed it."""

"""gateway/smtpd/authentication.py: what each kind of failed login gets, and whether it counts."""

from twisted.cred.error import UnauthorizedLogin
from twisted.python.failure import Failure

from gateway.auth.identity import DirectoryUnavailable, LockedOut
from gateway.errors import Reply
from gateway.smtpd.authentication import failure_outcome


def failure(e: Exception) -> Failure:
    try:
        raise e
    except Exception:
        return Failure()


def test_failures_that_count_and_those_that_do_not():
    """Bad credentials (535) and a lockout (454) count; a directory down counts only if a backend refused first; a bug never."""
    assert failure_outcome(failure(UnauthorizedLogin())) == (Reply.AUTH_FAILED, "bad credentials", True)
    assert failure_outcome(failure(LockedOut("locked"))) == (Reply.AUTH_TEMPFAIL, "locked", True)
    down = DirectoryUnavailable("down")
    assert failure_outcome(failure(down))[2] is bool(down.counted)
    assert failure_outcome(failure(ValueError("bug"))) == (Reply.AUTH_TEMPFAIL, "internal error", False)

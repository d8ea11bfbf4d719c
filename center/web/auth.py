"""Staff log-in for the web pages: argon2 password hashes, sessions kept by the center,
a CSRF token per session, roles from the staff register.

The cookie holds a random token; the center keeps its SHA-256 with the officer and the
session's CSRF token (``web_sessions``), so a session ends everywhere on log-out and a
copy of the database hands out none. Every state-changing request of a session carries
the CSRF token in its form; a request without the right token is refused. Roles are read
from the staff register at every request, so an officer made inactive is out at once.
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from center.staff import Officer, StaffError, get_officer
from center.web_models import StaffPassword, WebSession
from zhichao.errors import ZhichaoError

COOKIE = "zhichao_session"
"""The session cookie's name."""
PASSWORD_MIN = 10
"""The shortest password accepted."""
PASSWORD_MAX = 256
"""The longest (argon2 takes any length; a bound keeps a request cheap)."""

_hasher = PasswordHasher()


class AuthError(ZhichaoError):
    """A log-in or a session is refused; the message says why in words fit for the page
    (never whether an officer id exists)."""


@dataclass(frozen=True)
class Login:
    """A staff member's session: who, and the CSRF token their forms carry."""

    officer: Officer
    csrf: str


def set_password(session: Session, officer_id: str, password: str) -> None:
    """Store the officer's password as an argon2 hash (the officer must be registered);
    every session of the officer ends."""
    get_officer(session, officer_id, check=False)
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise AuthError(f"a password has {PASSWORD_MIN} to {PASSWORD_MAX} characters")
    row = session.get(StaffPassword, officer_id)
    now = datetime.now(UTC)
    if row is None:
        session.add(StaffPassword(officer_id=officer_id, hash=_hasher.hash(password),
                                  set_at=now))
    else:
        row.hash, row.set_at = _hasher.hash(password), now
    session.execute(delete(WebSession).where(WebSession.officer_id == officer_id))
    session.flush()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def log_in(session: Session, officer_id: str, password: str, hours: float) -> str:
    """A new session's cookie token for the officer, if the password fits and the register
    lets the officer act today; AuthError otherwise (one message for every failure, so the
    page tells nobody which officer ids exist)."""
    refused = AuthError("officer id or password not accepted")
    if not (0 < len(officer_id) <= 32 and 0 < len(password) <= PASSWORD_MAX):
        raise refused
    row = session.get(StaffPassword, officer_id)
    try:
        if row is None:
            _hasher.hash(password)  # the same work either way: no timing tells
            raise refused
        _hasher.verify(row.hash, password)
        get_officer(session, officer_id)
    except (VerificationError, InvalidHashError, StaffError):
        raise refused from None
    if _hasher.check_needs_rehash(row.hash):
        row.hash = _hasher.hash(password)
    token, now = secrets.token_urlsafe(32), datetime.now(UTC)
    session.add(WebSession(token_hash=_digest(token), officer_id=officer_id,
                           csrf=secrets.token_urlsafe(32), created_at=now,
                           expires_at=now + timedelta(hours=hours)))
    session.flush()
    return token


def current(session: Session, token: str | None) -> Login | None:
    """The log-in of a cookie token, or None (no token, unknown, expired, or an officer
    the register no longer lets act)."""
    if not token or len(token) > 128:
        return None
    row = session.get(WebSession, _digest(token))
    if row is None or row.expires_at <= datetime.now(UTC):
        return None
    try:
        officer = get_officer(session, row.officer_id)
    except StaffError:
        return None
    return Login(officer, row.csrf)


def log_out(session: Session, token: str | None) -> None:
    """End the cookie's session."""
    if token:
        session.execute(delete(WebSession).where(WebSession.token_hash == _digest(token)))


def csrf_ok(login: Login, sent: str | None) -> bool:
    """Whether a form's CSRF token is the session's (compared in constant time)."""
    return bool(sent) and secrets.compare_digest(login.csrf, str(sent))


def officers_with_password(session: Session) -> list[str]:
    """Officer ids that can log in."""
    return list(session.scalars(select(StaffPassword.officer_id)))

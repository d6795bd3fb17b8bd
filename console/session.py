"""The console's session: a signed, expiring cookie given for a read API token, and its CSRF token.

The cookie holds a random session id and a fingerprint of the token that opened it, signed with
CONSOLE_SESSION_SECRET (itsdangerous). Removing that token from API_TOKENS ends its sessions at once.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "console_session"
COOKIE_PATH = "/console"


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    session_id: str
    csrf_token: str
    signed_in: bool  # False when API_TOKENS is empty: the console is open, as the read API is


class SessionKeys:
    def __init__(self, secret: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="console-session")
        self._csrf_key = hashlib.sha256(b"console-csrf\0" + secret.encode()).digest()

    def issue(self, token: str) -> str:
        return self._serializer.dumps({"sid": secrets.token_urlsafe(18), "tf": fingerprint(token)})

    def read(self, cookie: str, *, tokens: list[str], max_age_seconds: int) -> ConsoleSession | None:
        try:
            value: Any = self._serializer.loads(cookie, max_age=max_age_seconds)
        except BadSignature:  # also an expired one (SignatureExpired is a BadSignature)
            return None
        if not isinstance(value, dict) or not isinstance(value.get("sid"), str):
            return None
        if not any(hmac.compare_digest(str(value.get("tf")), fingerprint(token)) for token in tokens):
            return None
        return ConsoleSession(value["sid"], self.csrf_token(value["sid"]), signed_in=True)

    def csrf_token(self, session_id: str) -> str:
        return hmac.new(self._csrf_key, session_id.encode(), hashlib.sha256).hexdigest()

    def csrf_matches(self, session: ConsoleSession, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(session.csrf_token, given)


def fingerprint(token: str) -> str:
    return hashlib.sha256(b"console-token\0" + token.encode()).hexdigest()[:32]


def session_keys(request: Request) -> SessionKeys:
    """The app's keys, made on first use: from CONSOLE_SESSION_SECRET, or (development only, since
    production refuses to start without it) a random key of this process's own."""
    state = request.app.state
    keys: SessionKeys | None = getattr(state, "console_keys", None)
    if keys is None:
        keys = state.console_keys = SessionKeys(
            state.settings.console_session_secret or secrets.token_urlsafe(32)
        )
    return keys


def current_session(request: Request) -> ConsoleSession | None:
    """The request's session; None when API_TOKENS is set and the request has no valid cookie."""
    settings = request.app.state.settings
    keys = session_keys(request)
    if not settings.api_tokens:
        return ConsoleSession("open", keys.csrf_token("open"), signed_in=False)
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return None
    return keys.read(
        cookie, tokens=settings.api_tokens, max_age_seconds=int(settings.console_session_hours * 3600)
    )

"""The panel's browser security, as pure functions and constants: the session cookie's flags,
the CSRF tokens, the Content-Security-Policy and the other response headers.

The session cookie carries the admin session token (admins.open_session, the admin API's own
sessions); the CSRF token of a session is an HMAC of a fixed label under that token, so it needs
no storage and is worthless without the (HttpOnly) cookie. Before sign-in there is no session:
the sign-in form's token is a random value sent both as a cookie and in the form (double submit).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SESSION_COOKIE = "antaca_panel"
SIGN_IN_COOKIE = "antaca_panel_sign_in"
CSRF_FIELD = "csrf"
COOKIE_PATH = "/panel/"
PANEL_PREFIX = "/panel"

idle_timeout_seconds = 15 * 60
sign_in_token_bytes = 32

# Nothing from elsewhere, no inline script or style, no framing, forms post only to the panel.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def csrf_token(session_token: str) -> str:
    """The CSRF token of the session whose secret token is `session_token`."""
    return hmac.new(session_token.encode(), b"antaca-panel-csrf", hashlib.sha256).hexdigest()


def csrf_matches(expected: str | None, given: str | None) -> bool:
    """Whether a form's token is the expected one (constant-time; a missing one never matches)."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def new_sign_in_token() -> str:
    return secrets.token_urlsafe(sign_in_token_bytes)


def cookie_flags(secure: bool) -> dict[str, object]:
    """The attributes of every panel cookie: HttpOnly, SameSite=Strict, the panel's path, and
    Secure when the request came over TLS."""
    return {"httponly": True, "samesite": "Strict", "path": COOKIE_PATH, "secure": secure}

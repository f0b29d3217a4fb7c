"""The re-login cookie: a signed JWT that only names a server-side session, so logout can revoke it."""

from __future__ import annotations

from datetime import datetime

import jwt

ALGORITHM = "HS256"


def encode(*, token: str, expires_at: datetime, key: str) -> str:
    return jwt.encode({"sid": token, "exp": int(expires_at.timestamp())}, key, algorithm=ALGORITHM)


def decode(value: str, *, key: str) -> str | None:
    """The session token in a cookie, or None when it is forged, tampered with, expired or malformed."""
    try:
        payload = jwt.decode(value, key, algorithms=[ALGORITHM], options={"require": ["sid", "exp"]})
    except jwt.PyJWTError:
        return None
    sid = payload.get("sid")
    return sid if isinstance(sid, str) and sid else None

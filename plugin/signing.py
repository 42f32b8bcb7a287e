"""Signed button payloads.

A button's `integration.context` travels through Mattermost and comes back on the click, but anyone
who can reach the listener can forge a click. So the context carries an HMAC-SHA256 over the action,
its subject, its data and an expiry; the listener checks it in constant time before anything runs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any


class BadSignature(Exception):
    """A click whose payload was not signed by this bot, was altered, or has expired."""


@dataclass(frozen=True)
class Payload:
    action: str
    subject: str
    data: dict[str, Any]
    expires: int


def _canonical(action: str, subject: str, data: dict[str, Any], expires: int) -> bytes:
    return json.dumps([action, subject, data, expires], sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False).encode()


class Signer:
    """Packs and verifies button contexts with one secret key."""

    def __init__(self, secret: str | bytes, ttl: float = 7 * 24 * 3600) -> None:
        key = secret.encode() if isinstance(secret, str) else secret
        if len(key) < 16:
            raise ValueError("the signing key must be at least 16 bytes")
        self._key = key
        self.ttl = ttl

    def _mac(self, message: bytes) -> str:
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def pack(self, action: str, subject: str = "", data: dict[str, Any] | None = None,
             ttl: float | None = None) -> dict[str, Any]:
        """The context to put in a button's integration.

        Keep `data` to strings, lists and objects: numbers pass through Mattermost as floats.
        """
        data = data or {}
        expires = int(time.time() + (self.ttl if ttl is None else ttl))
        return {"action": action, "subject": subject, "data": data, "exp": expires,
                "sig": self._mac(_canonical(action, subject, data, expires))}

    def unpack(self, context: Any, now: float | None = None) -> Payload:
        """Verify a click's context; raises BadSignature with a short reason."""
        if not isinstance(context, dict):
            raise BadSignature("no signed context")
        action, subject = context.get("action"), context.get("subject", "")
        data, expires, sig = context.get("data", {}), context.get("exp"), context.get("sig")
        # Mattermost decodes the context into Go floats and encodes it again.
        if isinstance(expires, float) and expires.is_integer():
            expires = int(expires)
        if not (isinstance(action, str) and isinstance(subject, str) and isinstance(data, dict)
                and isinstance(expires, int) and isinstance(sig, str)):
            raise BadSignature("malformed signed context")
        expected = self._mac(_canonical(action, subject, data, expires))
        if not hmac.compare_digest(expected.encode(), sig.encode()):
            raise BadSignature("signature does not match")
        if (time.time() if now is None else now) > expires:
            raise BadSignature("expired")
        return Payload(action, subject, data, expires)

"""API keys: `Authorization: Bearer <key>` -> the owner every video belongs to.

Keys come from configuration (`kinema serve --api-key`) or KINEMA_API_KEYS. The store keeps
only an owner id derived from a key's SHA-256, never the key. With no keys configured the server
is open and every caller is the one owner "public" (fine on loopback, refused elsewhere unless
asked for: see `kinema serve --no-auth`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from kinema.serve.errors import ApiError

PUBLIC = "public"


def owner_of(key: str) -> str:
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:32]


class Auth:
    def __init__(self, keys: Sequence[str] = ()):
        self._owners = {owner_of(k) for k in keys}

    @property
    def required(self) -> bool:
        return bool(self._owners)

    def owner(self, key: str | None) -> str:
        """The owner for a presented key (None: no key); ApiError 401 when it is not accepted."""
        if not self.required:
            return PUBLIC
        if not key:
            raise ApiError(
                401,
                "missing API key: send it as 'Authorization: Bearer <key>'",
                code="missing_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        owner = owner_of(key)
        if owner not in self._owners:
            raise ApiError(
                401,
                "incorrect API key",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return owner

    def owner_from_header(self, authorization: str | None) -> str:
        scheme, _, key = (authorization or "").partition(" ")
        return self.owner(key.strip() if scheme.lower() == "bearer" else None)

"""A Zoho access token shared by every run and process of one site, kept until shortly before it expires.

Why it exists: Zoho mints at most ten access tokens per refresh token in ten minutes. A client per process
would mint one per `cbzoho sync`, so the eleventh manual sync in ten minutes failed. The token is kept in
one small file per site, written owner-only (0600) and replaced atomically; a file lock makes two
processes that need a token at the same moment mint one, not two.

What it must never do: hold the refresh token or the client secret (the file is keyed by a one-way
fingerprint of them), be readable by other users, or reach DuckDB, logs or run metadata.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CachedToken:
    access_token: str
    api_domain: str | None
    expires_at: float  # wall-clock seconds (time.time()): shared across processes

    def __repr__(self) -> str:  # never show the token itself
        return f"CachedToken(api_domain={self.api_domain!r}, expires_at={self.expires_at:.0f})"


def credentials_fingerprint(accounts_url: str, client_id: str, refresh_token: str) -> str:
    """A one-way key for a set of credentials: a new refresh token never picks up an old access token."""
    return hashlib.sha256("\0".join([accounts_url.rstrip("/"), client_id, refresh_token]).encode()).hexdigest()


class FileTokenCache:
    """The access token of one site's credentials in `path` (mode 0600), guarded by `path`.lock."""

    def __init__(self, path: Path, fingerprint: str, *, clock=time.time) -> None:
        self.path = Path(path)
        self.fingerprint = fingerprint
        self._clock = clock

    def __repr__(self) -> str:
        return f"FileTokenCache({str(self.path)!r})"

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the cross-process lock: whoever holds it may read, mint and save without a race."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(str(self.path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def load(self) -> CachedToken | None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("fingerprint") != self.fingerprint:
            return None
        try:
            return CachedToken(str(data["access_token"]), data.get("api_domain"), float(data["expires_at"]))
        except (KeyError, TypeError, ValueError):
            return None

    def seconds_left(self, token: CachedToken) -> float:
        return token.expires_at - self._clock()

    def save(self, access_token: str, api_domain: str | None, expires_in: float) -> None:
        record = {"fingerprint": self.fingerprint, "access_token": access_token, "api_domain": api_domain,
                  "expires_at": self._clock() + expires_in}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # whatever the umask or an older file said
            os.write(fd, json.dumps(record).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)

    def discard(self, access_token: str) -> None:
        """Forget `access_token` if it is the one stored (Zoho rejected it); a newer one is kept."""
        current = self.load()
        if current is not None and current.access_token == access_token:
            self.path.unlink(missing_ok=True)

    def clear(self) -> None:
        for path in (self.path, Path(str(self.path) + ".lock")):
            try:
                path.unlink()
            except FileNotFoundError:
                pass

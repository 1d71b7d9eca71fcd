"""Give up on an endpoint that does not answer at all, quickly, and once per process.

Why it exists: with the sandbox stopped, a firewall in the way or a wrong URL, every call's retries used to
wait out their whole backoff (about 30 s) and every step of a run paid it again, so a sync took minutes to
fail. A call whose connection cannot even be opened now gives up after `GIVE_UP_SECONDS` of trying; the
host is then remembered as down for `REMEMBER_SECONDS`, so the run's other steps fail at once with the
same cause. Only failures before the request left count here: a dropped answer is another matter.

What it must never do: hold a URL's credentials or query (only scheme, host and port are kept).
"""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

import requests

GIVE_UP_SECONDS = 15.0
REMEMBER_SECONDS = 60.0

_down: dict[str, tuple[float, str]] = {}
_lock = threading.Lock()


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def never_sent(exc: BaseException) -> bool:
    """Whether a transport error happened before the request could reach the server (nothing to undo)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        from urllib3.exceptions import NameResolutionError, NewConnectionError

        reason = exc.args[0] if exc.args else None
        reason = getattr(reason, "reason", reason)  # MaxRetryError wraps the cause
        return isinstance(reason, (NewConnectionError, NameResolutionError))
    return False


def known_down(url: str, clock=time.monotonic) -> str | None:
    """Why `url`'s host is known to be unreachable right now, or None."""
    with _lock:
        entry = _down.get(origin(url))
        if entry is None:
            return None
        until, why = entry
        if clock() >= until:
            del _down[origin(url)]
            return None
        return why


def mark_down(url: str, why: str, clock=time.monotonic) -> None:
    with _lock:
        _down[origin(url)] = (clock() + REMEMBER_SECONDS, why)


def give_up_check(url: str, exc: BaseException, since: float | None, attempt: int,
                  clock=time.monotonic) -> tuple[float | None, str | None]:
    """Track a call's refused connections to `url`: returns (since, why). `since` is when they began (None
    once the error is of another kind); `why` is set, and the host marked down, once they have lasted
    GIVE_UP_SECONDS: the caller raises its own error with it."""
    if not never_sent(exc):
        return None, None
    now = clock()
    since = now if since is None else since
    if now - since < GIVE_UP_SECONDS:
        return since, None
    why = (f"{origin(url)} refused or could not open a connection for {now - since:.0f} s "
           f"({attempt + 1} attempts, {type(exc).__name__})")
    mark_down(url, why)
    return since, why


def mark_up(url: str) -> None:
    with _lock:
        _down.pop(origin(url), None)

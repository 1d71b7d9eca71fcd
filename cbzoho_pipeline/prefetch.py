"""Read the next page while the current one is stored.

Why it exists: extraction and snapshots page through an API in sequence (each page names the next), and
each page costs a round trip plus our own work on it (checks, JSON, DuckDB). Fetching page k+1 in a worker
thread while page k is stored makes a stream cost about max(latency, work) per page instead of their sum.

The worker runs the page generator (the API client) and nothing else; everything that touches DuckDB stays
in the caller's thread. What it must never do: read ahead without bound (at most `depth` pages wait), hide
an error (the worker's exception is raised in the caller, after the pages before it), or keep reading after
the caller stopped (it quits at its next page).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_ITEM, _END, _ERROR = "item", "end", "error"


def prefetched(pages: Iterable[T], *, depth: int = 2, name: str = "prefetch") -> Iterator[T]:
    """Yield what `pages` yields, produced in a worker thread up to `depth` items ahead."""
    slots: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(kind: str, value: object) -> bool:
        while not stop.is_set():
            try:
                slots.put((kind, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for page in pages:
                if not put(_ITEM, page):
                    return
            put(_END, None)
        except BaseException as exc:  # handed to the caller, raised there
            put(_ERROR, exc)

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    try:
        while True:
            kind, value = slots.get()
            if kind == _ITEM:
                yield value  # type: ignore[misc]
            elif kind == _END:
                return
            else:
                raise value  # type: ignore[misc]
    finally:
        stop.set()
        worker.join(timeout=5)

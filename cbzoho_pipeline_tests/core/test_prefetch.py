"""The page reader ahead of the writer: same pages in the same order, errors where they happened, no
reading past what the caller wants, and the next page fetched while the current one is stored."""

from __future__ import annotations

import threading

import pytest

from cbzoho_pipeline.prefetch import prefetched


def test_pages_come_in_order_and_all_of_them():
    assert list(prefetched(iter(range(50)), depth=3)) == list(range(50))


def test_an_error_is_raised_after_the_pages_before_it():
    def pages():
        yield 1
        yield 2
        raise ConnectionError("page 3 failed")

    seen = []
    with pytest.raises(ConnectionError, match="page 3 failed"):
        for page in prefetched(pages()):
            seen.append(page)
    assert seen == [1, 2]


def test_the_next_page_is_fetched_while_the_current_one_is_stored():
    second_fetched = threading.Event()

    def pages():
        yield "first"
        second_fetched.set()
        yield "second"

    stream = prefetched(pages())
    assert next(stream) == "first"
    # Still "storing" the first page: the second is fetched meanwhile, without being asked for.
    assert second_fetched.wait(timeout=5)
    assert next(stream) == "second"


def test_a_caller_that_stops_stops_the_reading():
    produced = []

    def pages():
        for i in range(1000):
            produced.append(i)
            yield i

    stream = prefetched(pages(), depth=2)
    assert next(stream) == 0
    stream.close()  # the caller breaks out of its loop (e.g. a page broke the contract)
    assert len(produced) <= 4  # the page handed over, `depth` waiting, one being put back

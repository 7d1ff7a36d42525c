"""Crawl state and the persisted fetch queue, on SQLite and PostgreSQL: what makes a re-run read
only what is new and a killed run resume without losing or repeating anything."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from agents.base import MediaRef, Page, Post
from orchestrator.crawlbook import CrawlBook

T0 = datetime(2026, 5, 1, tzinfo=timezone.utc)


def post(n: int) -> Post:
    """Post n was created n minutes after T0 (a bigger n is newer)."""
    return Post(platform="demo", post_id=f"p{n}", url=f"https://demo/p/{n}", account="a", text="t",
                created_at=T0 + timedelta(minutes=n), media=(MediaRef(f"https://demo/m/{n}.jpg", "image"),))


def page(numbers: list[int], next_cursor: str | None) -> Page:
    return Page(posts=tuple(post(n) for n in numbers), next_cursor=next_cursor)


@pytest.fixture
def book(store):
    cid = store.upsert_campaign("c", "name: c")
    return CrawlBook(store, cid), store, cid


def stored(store, cid, pg: Page) -> None:
    for p in pg.posts:
        store.upsert_post(cid, p)


def walk(book: CrawlBook, chain, pages: dict[str | None, Page], cursor: str | None, store, cid, stop_after: int | None = None) -> list[str | None]:
    """Drive one chain over a fake feed the way the driver does; returns the cursors asked for."""
    asked = []
    while True:
        asked.append(cursor)
        pg = pages[cursor]
        stored(store, cid, pg)
        more = book.after_page(chain, pg)
        if not more or (stop_after is not None and len(asked) >= stop_after):
            return asked
        cursor = pg.next_cursor


FEED = {None: page([9, 8, 7], "c1"), "c1": page([6, 5, 4], "c2"), "c2": page([3, 2, 1], None)}


def test_first_run_reads_everything_and_sets_the_marks(book):
    book, store, cid = book
    [(chain, cursor)] = book.start("src", "t")
    assert chain.mode == "full" and cursor is None
    assert walk(book, chain, FEED, cursor, store, cid) == [None, "c1", "c2"]
    row = store.get_cursor(cid, "src", "t")
    assert (row.cursor, row.last_post_id) == (None, "p9")


def test_killed_first_run_resumes_at_its_cursor(book):
    book, store, cid = book
    [(chain, cursor)] = book.start("src", "t")
    walk(book, chain, FEED, cursor, store, cid, stop_after=1)  # killed after page one
    chains = book.start("src", "t")
    assert [(c.mode, cur) for c, cur in chains] == [("head", None), ("backfill", "c1")]
    head, backfill = chains
    assert walk(book, head[0], FEED, None, store, cid) == [None]  # page one holds the mark
    assert walk(book, backfill[0], FEED, "c1", store, cid) == ["c1", "c2"]
    assert store.get_cursor(cid, "src", "t").cursor is None


def test_rerun_reads_only_down_to_the_mark_and_moves_it(book):
    book, store, cid = book
    [(chain, cursor)] = book.start("src", "t")
    walk(book, chain, FEED, cursor, store, cid)
    grown = {None: page([14, 13, 12], "d1"), "d1": page([11, 10, 9], "d2"), "d2": page([8, 7, 6], "d3")}
    [(head, cursor)] = book.start("src", "t")
    assert head.mode == "head"
    assert walk(book, head, grown, cursor, store, cid) == [None, "d1"]  # stops where p9 is
    assert store.get_cursor(cid, "src", "t").last_post_id == "p14"


def test_head_pass_killed_half_way_keeps_the_old_mark(book):
    """Moving the mark before the pass reaches it would skip the posts in between for ever."""
    book, store, cid = book
    [(chain, cursor)] = book.start("src", "t")
    walk(book, chain, FEED, cursor, store, cid)
    grown = {None: page([14, 13, 12], "d1"), "d1": page([11, 10, 9], None)}
    [(head, _)] = book.start("src", "t")
    walk(book, head, grown, None, store, cid, stop_after=1)
    assert store.get_cursor(cid, "src", "t").last_post_id == "p9"
    [(again, _)] = book.start("src", "t")
    assert walk(book, again, grown, None, store, cid) == [None, "d1"]
    assert store.get_cursor(cid, "src", "t").last_post_id == "p14"


def test_mark_post_gone_stops_by_time(book):
    """The high-water post was deleted on the platform: its time still stops the pass."""
    book, store, cid = book
    [(chain, cursor)] = book.start("src", "t")
    walk(book, chain, FEED, cursor, store, cid)
    without_p9 = {None: page([12, 11, 10], "e1"), "e1": page([8, 7, 6], "e2"), "e2": page([5], None)}
    [(head, _)] = book.start("src", "t")
    assert walk(book, head, without_p9, None, store, cid) == [None, "e1"]


def test_media_tasks_are_owed_until_fetched_or_dropped(book):
    _, store, cid = book
    pk, _ = store.upsert_post(cid, post(1))
    pk2, _ = store.upsert_post(cid, post(2))
    refs = [("https://demo/m/a.jpg", "image", 0, None), ("https://yt/watch?v=x", "video", 1, "ytdlp")]
    assert store.ensure_media_tasks(cid, pk, refs) == ["pending", "pending"]
    assert store.ensure_media_tasks(cid, pk, refs) == ["pending", "pending"]  # idempotent
    store.ensure_media_tasks(cid, pk2, refs[:1])  # the same URL in another post
    pending = store.pending_media_tasks(cid)
    assert sorted((t.post_pk, t.url) for t in pending) == sorted(
        [(pk, refs[0][0]), (pk, refs[1][0]), (pk2, refs[0][0])]
    )
    assert next(t for t in pending if t.resolver == "ytdlp").kind == "video"
    assert store.finish_media_tasks(cid, refs[0][0], "done") == 2  # one fetch serves both posts
    assert store.finish_media_tasks(cid, refs[1][0], "dropped", "HTTP 404") == 1
    assert store.pending_media_tasks(cid) == []
    assert store.ensure_media_tasks(cid, pk, refs) == ["done", "dropped"]
    with pytest.raises(ValueError, match="'done' or 'dropped'"):
        store.finish_media_tasks(cid, refs[0][0], "lost")

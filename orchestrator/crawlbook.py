"""Where each source's crawl stands, so a re-run reads only what is new and a killed run resumes.

Sources list newest first. Per (source, term) the database keeps two facts (`SourceCursor`):

- `last_post_id`, the high-water mark: the newest post the last *completed* pass saw;
- `cursor`, the next page of an unfinished backfill (None once the source was read to its end).

A first run reads the source from the top ("full" chain): the high-water mark is set from its
first page and the cursor advances page by page, so a kill anywhere leaves a cursor to go on from.
A later run reads from the top again ("head" chain) until a page holds the high-water post or
nothing newer than it, and only then moves the mark up; a head pass killed half way leaves the old
mark, so the next run re-reads the same stretch (posts are idempotent) instead of skipping it. An
unfinished backfill continues from its stored cursor alongside ("backfill" chain).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from agents.base import Page
from storage.db import Store

ChainMode = Literal["full", "head", "backfill"]


@dataclass
class Chain:
    """One walk down a source's pages for one term."""

    source: str
    term: str
    mode: ChainMode
    stop_id: str | None = None  # head chains: the high-water post
    stop_at: datetime | None = None  # and its time, looked up on the first page
    newest: tuple[datetime, str] | None = None  # newest (created_at, post id) on the first page
    pages: int = 0
    done: bool = field(default=False)


class CrawlBook:
    def __init__(self, store: Store, campaign_id: int):
        self.store = store
        self.campaign_id = campaign_id

    def start(self, source: str, term: str, *, backfill: bool = True) -> list[tuple[Chain, str | None]]:
        """The chains to run now for (source, term), each with the cursor to ask for first."""
        row = self.store.get_cursor(self.campaign_id, source, term)
        if row is None or row.last_post_id is None:
            return [(Chain(source, term, "full"), row.cursor if row is not None else None)]
        chains: list[tuple[Chain, str | None]] = [(Chain(source, term, "head", stop_id=row.last_post_id), None)]
        if backfill and row.cursor is not None:
            chains.append((Chain(source, term, "backfill"), row.cursor))
        return chains

    def after_page(self, chain: Chain, page: Page) -> bool:
        """Record what `page` means for the chain; True when its next page should be read.

        Call after the page's posts are stored: the cursor saved here says they are.
        """
        first = chain.pages == 0
        chain.pages += 1
        if first and page.posts:
            newest = max(page.posts, key=lambda p: (p.created_at, p.post_id))
            chain.newest = (newest.created_at, newest.post_id)
            if chain.mode == "head" and chain.stop_id is not None:
                chain.stop_at = self.store.post_created_at(newest.platform, chain.stop_id)

        if chain.mode == "full":
            if first and chain.newest is not None:
                self.store.set_cursor(self.campaign_id, chain.source, chain.term, cursor=page.next_cursor,
                                      last_post_id=chain.newest[1])
            else:
                self.store.set_cursor(self.campaign_id, chain.source, chain.term, cursor=page.next_cursor)
            return self._go_on(chain, page.next_cursor is not None)
        if chain.mode == "backfill":
            self.store.set_cursor(self.campaign_id, chain.source, chain.term, cursor=page.next_cursor)
            return self._go_on(chain, page.next_cursor is not None)

        # head: stop at the high-water mark, then move the mark up to this pass's newest post.
        reached = any(p.post_id == chain.stop_id for p in page.posts) or (
            chain.stop_at is not None and not any(p.created_at > chain.stop_at for p in page.posts)
        )
        if reached or page.next_cursor is None:
            if chain.newest is not None and (chain.stop_at is None or chain.newest[0] >= chain.stop_at):
                self.store.set_cursor(self.campaign_id, chain.source, chain.term, last_post_id=chain.newest[1])
            return self._go_on(chain, False)
        return self._go_on(chain, True)

    @staticmethod
    def _go_on(chain: Chain, more: bool) -> bool:
        chain.done = not more
        return more

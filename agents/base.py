"""The crawler contract: an agent turns a source spec plus a cursor into posts.

Agents know nothing of Ray, databases or detectors. They return plain frozen records that
pickle cheaply across Ray and that the storage layer keys by natural identity
(platform + post id for posts, sha256 for media bytes).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

MediaKind = Literal["image", "video"]


@dataclass(frozen=True)
class MediaRef:
    """A piece of media a post points at, not yet fetched."""

    url: str
    kind: MediaKind
    position: int = 0  # order inside the post
    # How the fetch stage turns `url` into bytes: None = a direct media URL; "ytdlp" = a page
    # (a YouTube watch URL, say) whose media yt-dlp extracts (agents/ytdlp.py).
    resolver: str | None = None


@dataclass(frozen=True)
class Post:
    """One post as a platform showed it. `created_at` is timezone-aware UTC."""

    platform: str
    post_id: str
    url: str
    account: str
    text: str
    created_at: datetime
    hashtags: tuple[str, ...] = ()
    media: tuple[MediaRef, ...] = ()
    lang: str | None = None
    source: str = ""  # name of the campaign source that found it
    screenshot_sha256: str | None = None  # full-page capture stored in the blob store, if any


@dataclass(frozen=True)
class Page:
    """One page of results from a source; `next_cursor` None means the source is exhausted."""

    posts: tuple[Post, ...]
    next_cursor: str | None
    screenshot_sha256: str | None = None  # a capture of the whole page, if the agent takes one


@dataclass(frozen=True)
class FetchedMedia:
    """Media bytes that landed in the blob store."""

    url: str
    sha256: str
    size: int
    mime: str
    kind: MediaKind


@dataclass(frozen=True)
class Drop:
    """Something that did not make it through a stage, with the reason counted in the report."""

    stage: str
    reason: str
    subject: str  # a URL, a sha256 or a source name
    detail: str = ""


@dataclass
class AgentStats:
    pages: int = 0
    posts: int = 0
    drops: list[Drop] = field(default_factory=list)


class Agent(Protocol):
    """One verb: fetch the page after `cursor` for the given query term.

    Search agents (`searches = True`) are called once per campaign term. Feed agents (an RSS
    feed, a channel, a web page: `searches = False`) read what their params name and are
    called once per source with term "" (they may still filter on their own `keywords`).
    """

    platform: str
    searches: bool

    def fetch_page(self, term: str, cursor: str | None) -> Page: ...

    def close(self) -> None: ...

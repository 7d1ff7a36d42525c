"""Records of the demo world: media bytes, their ground truth, posts, and the search rule."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

TruthLabel = Literal["real", "fake", "broken"]
FakeKind = Literal["c2pa", "watermark", "manipulated", "reupload"]
MediaKind = Literal["image", "video"]


@dataclass(frozen=True)
class MediaBlob:
    """Bytes the platform serves at a media path, with the Content-Type it declares."""

    data: bytes
    content_type: str
    kind: MediaKind

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def etag(self) -> str:
        return f'"{self.sha256[:32]}"'


@dataclass(frozen=True)
class MediaTruth:
    label: TruthLabel
    fake_kind: FakeKind | None
    kind: MediaKind
    original: str | None  # media path of the original, for re-uploads
    transform: str | None  # plain words: what was done to make this item


@dataclass(frozen=True)
class WorldPost:
    id: str
    handle: str
    text: str
    created_at: datetime  # timezone-aware UTC
    hashtags: tuple[str, ...]  # without '#'
    lang: str
    media: tuple[str, ...]  # media paths, in order
    topic: Literal["election", "off_topic"] = "election"
    search_words: frozenset[str] = field(default=frozenset(), compare=False, repr=False)


_WORD = re.compile(r"[\w-]+")
_HANGUL = re.compile(r"[\uac00-\ud7a3]")


def words_of(text: str) -> frozenset[str]:
    return frozenset(w.casefold() for w in _WORD.findall(text))


def post_matches(post: WorldPost, query: str) -> bool:
    """The search rule: every whitespace-separated query term must match the post.

    A term starting with '#' matches a hashtag exactly (case-insensitive). Any other term matches
    a hashtag exactly or a word of the text; a Korean term also matches a word it begins, since
    Korean attaches particles to nouns (선거 matches 선거가, 선거일은).
    """
    terms = query.split()
    if not terms:
        return False
    tags = {t.casefold() for t in post.hashtags}
    words = post.search_words or words_of(post.text)
    for raw in terms:
        term = raw.casefold()
        if term.startswith("#"):
            if term[1:] not in tags:
                return False
            continue
        if term in tags or term in words:
            continue
        if _HANGUL.search(term) and any(w.startswith(term) for w in words):
            continue
        return False
    return True

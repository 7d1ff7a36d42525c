"""The demo world: a small, deterministic social network about a fictional Korean election.

`build_world(seed, n_posts)` plans posts (who posts what, when), generates every media item with
`demo_platform.factory`, and keeps the planted ground truth next to the bytes. The same seed gives
the same posts and the same media bytes, except C2PA-signed files, whose manifests carry random
salts (their pixels, paths and manifest labels are still the same; see `provenance`).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace

import numpy as np

from demo_platform import content
from demo_platform.content import ACCOUNTS, Account
from demo_platform.factory import Item, MediaFactory
from demo_platform.model import MediaBlob, MediaTruth, WorldPost, post_matches, words_of

DEFAULT_SEARCH_TERMS = ["선거", "election", "#선거2026", "#election2026"]
ELECTION_DAY = dt.datetime(2026, 6, 3, tzinfo=dt.timezone.utc)
WINDOW_START = dt.datetime(2026, 4, 20, tzinfo=dt.timezone.utc)
WINDOW_END = dt.datetime(2026, 6, 2, 15, 0, tzinfo=dt.timezone.utc)
MIN_POSTS = 20

__all__ = ["World", "WorldPost", "MediaBlob", "MediaTruth", "Account", "build_world", "DEFAULT_SEARCH_TERMS"]


@dataclass
class World:
    seed: int
    accounts: dict[str, Account]
    posts: list[WorldPost]  # oldest first; ids p0001... follow that order
    media: dict[str, MediaBlob]  # "/media/<name>.<ext>" -> bytes and declared type
    truth: dict[str, MediaTruth]  # same keys as `media`
    search_terms: list[str] = field(default_factory=lambda: list(DEFAULT_SEARCH_TERMS))

    def __post_init__(self) -> None:
        self._by_id = {p.id: p for p in self.posts}
        self._newest_first = sorted(self.posts, key=lambda p: (p.created_at, p.id), reverse=True)

    def truth_by_sha256(self) -> dict[str, MediaTruth]:
        """Truth keyed by the sha256 of the served bytes (what the pipeline stores media by)."""
        return {self.media[path].sha256: t for path, t in self.truth.items()}

    def media_type(self, path: str) -> tuple[str, str]:
        """(kind, declared Content-Type) of a media path, without its bytes."""
        blob = self.media[path]
        return blob.kind, blob.content_type

    def post(self, post_id: str) -> WorldPost | None:
        return self._by_id.get(post_id)

    def newest_first(self) -> list[WorldPost]:
        return list(self._newest_first)

    def search(self, query: str) -> list[WorldPost]:
        """Posts matching `query` (see `model.post_matches`), newest first."""
        return [p for p in self._newest_first if post_matches(p, query)]

    def account_posts(self, handle: str) -> list[WorldPost]:
        return [p for p in self._newest_first if p.handle == handle]


@dataclass
class _Plan:
    kind: str  # "images", "video", "reupload", "text"
    items: list[Item]
    topic: str = "election"
    handle: str = ""
    created_at: dt.datetime | None = None
    source: "_Plan | None" = None  # for re-uploads: the post that carried the original


def _counts(n_posts: int) -> dict[str, int]:
    """Media mix for the default 120 posts, scaled: ~47% real, four kinds of fakes, 2 broken."""
    f = n_posts / 120

    def c(x: float) -> int:
        return max(1, round(x * f))

    return {
        "real_image": max(3, c(68)), "real_video": max(2, c(6)),
        "c2pa": c(14), "watermark": max(3, c(14)),
        "manipulated_image": c(30), "manipulated_video": c(5),
        "reupload_image": c(16), "reupload_video": c(3),
    }


def _chunk(rng: np.random.Generator, items: list[Item], n_posts: int) -> list[list[Item]]:
    """Split items over `n_posts` posts of 1 to 3 items each."""
    if n_posts < 1 or len(items) < n_posts or len(items) > 3 * n_posts:
        raise ValueError(f"cannot put {len(items)} images into {n_posts} posts of 1-3 images")
    sizes = np.ones(n_posts, dtype=int)
    for _ in range(len(items) - n_posts):
        sizes[rng.choice(np.flatnonzero(sizes < 3))] += 1
    out, start = [], 0
    for s in sizes:
        out.append(items[start: start + int(s)])
        start += int(s)
    return out


def _handles(role: str) -> list[str]:
    return [a.handle for a in ACCOUNTS if a.role == role]


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _choose_account(rng: np.random.Generator, plan: _Plan) -> str:
    election = [a.handle for a in ACCOUNTS if a.role != "off_topic"]
    if plan.topic == "off_topic":
        return "seoul_foodie" if rng.random() < 0.7 else _pick(rng, _handles("voter") + _handles("news"))
    fake_kinds = {i.truth.fake_kind for i in plan.items if i.truth.label == "fake"}
    if plan.kind == "reupload":
        assert plan.source is not None
        others = [h for h in _handles("spreader") + _handles("voter") + _handles("news") if h != plan.source.handle]
        return _pick(rng, others)
    if fake_kinds:
        roll = rng.random()
        role = "spreader" if roll < 0.6 else "voter" if roll < 0.85 else "news"
        return _pick(rng, _handles(role))
    return _pick(rng, election)


def _random_time(rng: np.random.Generator, start: dt.datetime, end: dt.datetime) -> dt.datetime:
    span = int((end - start).total_seconds() // 60)
    return start + dt.timedelta(minutes=int(rng.integers(span)))


def _make_media(factory: MediaFactory, counts: dict[str, int]) -> dict[str, list[Item]]:
    made: dict[str, list[Item]] = {k: [] for k in
                                   ("real_image", "manipulated_image", "c2pa", "watermark",
                                    "real_video", "manipulated_video", "reupload_image",
                                    "reupload_video", "broken")}
    for _ in range(counts["real_image"]):
        made["real_image"].append(factory.real_image())
    for _ in range(counts["manipulated_image"]):
        made["manipulated_image"].append(factory.manipulated_image())
    for _ in range(counts["c2pa"]):
        made["c2pa"].append(factory.c2pa_image())
    for i in range(counts["watermark"]):
        made["watermark"].append(factory.watermark_image(style=i))
    for _ in range(counts["real_video"]):
        made["real_video"].append(factory.video_clip(manipulated=False))
    for _ in range(counts["manipulated_video"]):
        made["manipulated_video"].append(factory.video_clip(manipulated=True))
    made["broken"] = [factory.truncated_jpeg(), factory.html_as_jpeg()]
    return made


def build_world(seed: int = 7, n_posts: int = 120) -> World:
    """Generate the demo world (deterministic for a seed; ~10 s for the default size)."""
    if n_posts < MIN_POSTS:
        raise ValueError(f"n_posts must be at least {MIN_POSTS}, got {n_posts}")
    rng = np.random.default_rng([seed, 0x5EED])
    counts = _counts(n_posts)
    factory = MediaFactory(seed)
    made = _make_media(factory, counts)

    # Originals that re-uploads copy: fakes of the three primary kinds, images and videos.
    fake_pool = made["c2pa"] + made["watermark"] + made["manipulated_image"]
    reup_sources = [fake_pool[int(k)] for k in rng.choice(len(fake_pool), size=counts["reupload_image"],
                                                           replace=counts["reupload_image"] > len(fake_pool))]
    vid_sources = [made["manipulated_video"][i % len(made["manipulated_video"])] for i in range(counts["reupload_video"])]

    # Off-topic posts carry only real media and none of the election words.
    reals = list(made["real_image"])
    n_off_images = max(1, round(0.04 * n_posts))
    off_plans = [_Plan("images", [reals.pop()], topic="off_topic") for _ in range(n_off_images)]
    off_plans.append(_Plan("video", [made["real_video"][-1]], topic="off_topic"))
    off_plans += [_Plan("text", [], topic="off_topic") for _ in range(max(1, round(0.03 * n_posts)))]

    originals = reals + made["manipulated_image"] + made["c2pa"] + made["watermark"] + made["broken"]
    order = rng.permutation(len(originals))
    originals = [originals[int(i)] for i in order]
    videos = made["real_video"][:-1] + made["manipulated_video"]
    n_text = max(2, round(0.15 * n_posts))
    n_reupload_posts = len(reup_sources) + len(vid_sources)
    n_image_posts = n_posts - len(off_plans) - len(videos) - n_reupload_posts - n_text
    n_image_posts = max(-(-len(originals) // 3), min(n_image_posts, len(originals)))
    n_text = n_posts - len(off_plans) - len(videos) - n_reupload_posts - n_image_posts
    if n_text < 1:
        raise ValueError(f"n_posts={n_posts} is too small for the planted media mix")

    plans = off_plans + [_Plan("images", chunk) for chunk in _chunk(rng, originals, n_image_posts)]
    plans += [_Plan("video", [v]) for v in videos]
    plans += [_Plan("text", []) for _ in range(n_text)]
    carrier = {}
    for plan in plans:
        plan.handle = _choose_account(rng, plan)
        plan.created_at = _random_time(rng, WINDOW_START, WINDOW_END)
        for item in plan.items:
            carrier[item.path] = plan

    # Re-uploads: a transcoded copy posted later by someone other than the original poster.
    for source in reup_sources:
        carrier_plan = carrier[source.path]
        plans.append(_Plan("reupload", [factory.reupload_image(source)], source=carrier_plan))
    for source in vid_sources:
        plans.append(_Plan("reupload", [factory.reupload_video(source)], source=carrier[source.path]))
    for plan in plans:
        if plan.kind == "reupload":
            assert plan.source is not None and plan.source.created_at is not None
            plan.handle = _choose_account(rng, plan)
            room = int((WINDOW_END - plan.source.created_at).total_seconds() // 60)
            delay = int(rng.integers(90, min(4 * 24 * 60, room))) if room > 91 else 30
            plan.created_at = plan.source.created_at + dt.timedelta(minutes=delay)

    posts = _write_posts(rng, plans)
    media = {}
    truth = {}
    for plan in plans:
        for item in plan.items:
            media[item.path] = item.blob
            truth[item.path] = item.truth
    return World(seed=seed, accounts={a.handle: a for a in ACCOUNTS}, posts=posts, media=media, truth=truth)


def _write_posts(rng: np.random.Generator, plans: list[_Plan]) -> list[WorldPost]:
    """Texts and ids: posts numbered in time order, the planted XSS text on one text post."""
    ordered = sorted(range(len(plans)), key=lambda i: (plans[i].created_at, i))
    text_plans = [i for i in ordered if plans[i].kind == "text" and plans[i].topic == "election"]
    if not text_plans:
        raise RuntimeError("no text-only election post to carry the planted XSS text")
    xss_index = text_plans[len(text_plans) // 2]
    posts = []
    accounts = {a.handle: a for a in ACCOUNTS}
    for number, i in enumerate(ordered, start=1):
        plan = plans[i]
        assert plan.created_at is not None
        lang = accounts[plan.handle].lang
        if rng.random() < 0.15:
            lang = "en" if lang == "ko" else "ko"  # bilingual accounts now and then
        if plan.topic == "off_topic":
            text, tags = content.off_topic_text(rng, lang)
        elif i == xss_index:
            text, tags, lang = content.XSS_TEXT + " #선거2026", ("선거2026",), "ko"
        else:
            days = max(0, (ELECTION_DAY - plan.created_at).days)
            text, tags = content.election_text(rng, lang, days_left=days, reupload=plan.kind == "reupload")
        post = WorldPost(
            id=f"p{number:04d}", handle=plan.handle, text=text, created_at=plan.created_at,
            hashtags=tags, lang=lang, media=tuple(item.path for item in plan.items), topic=plan.topic,  # type: ignore[arg-type]
        )
        posts.append(replace(post, search_words=words_of(text)))
    return posts

"""Who posts in the demo world and what they write: accounts, post texts and hashtags.

All election posts contain the word 선거 (Korean) or "election" (English) so the default search
terms reach them; off-topic posts avoid both, so a crawl that follows the search terms must skip
them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ELECTION_DAY = "2026-06-03"


@dataclass(frozen=True)
class Account:
    handle: str
    display_name: str
    lang: str  # the language the account mostly writes in: "ko" or "en"
    role: str  # "candidate", "news", "voter", "spreader", "off_topic" (shapes what it posts)


ACCOUNTS: tuple[Account, ...] = (
    Account("minjun_kim", "김민준", "ko", "candidate"),
    Account("seoyeon_lee", "이서연", "ko", "candidate"),
    Account("kpolitics_daily", "K-Politics Daily", "en", "news"),
    Account("voter_jiho", "유권자 지호", "ko", "voter"),
    Account("election_watch", "Election Watch KR", "en", "voter"),
    Account("truth_hunter88", "진실추적자", "ko", "spreader"),
    Account("viral_news_now", "Viral News Now", "en", "spreader"),
    Account("seoul_foodie", "서울 맛집 탐방", "ko", "off_topic"),
)

CANDIDATES_KO = ("김민준", "이서연")
CANDIDATES_EN = ("Kim Min-jun", "Lee Seo-yeon")

KO_ELECTION = (
    "{cand} 후보 유세 현장 사진입니다. 이번 선거 분위기 정말 뜨겁네요",
    "TV 토론 직후 {cand} 캠프 반응. 선거까지 {days}일 남았습니다",
    "충격! {cand} 후보의 진짜 모습이라고 합니다… 선거 전에 꼭 보세요",
    "사전투표 안내: 선거일은 6월 3일입니다. 신분증 챙기세요",
    "{cand} 후보 지지자들이 광장에 모였습니다. 선거 열기 대단하네요",
    "이게 사실이라면 선거 판이 뒤집힙니다. {cand} 후보 해명하세요",
    "방금 받은 자료인데 {cand} 맞나요? 선거 관련 제보입니다",
    "{other} 후보 측 공약 발표. 선거 쟁점은 부동산과 일자리",
    "오늘 선거 토론 보신 분? {cand} 후보 발언 정리했습니다",
)
EN_ELECTION = (
    "Crowds at {cand}'s rally today. This election is heating up",
    "Debate night recap: {cand} vs {other}. {days} days to the election",
    "LEAKED: what {cand} doesn't want you to see before the election",
    "Reminder: the election is on June 3. Check your polling station",
    "Is this real? Photo of {cand} circulating ahead of the election",
    "{cand} campaign releases new ad. Election season in full swing",
    "Fact check needed: this {cand} clip is everywhere. Election misinformation?",
    "Polls tighten between {cand} and {other} as the election nears",
)
KO_REUPLOAD = (
    "퍼왔습니다. 선거 전에 다들 보셔야 할 듯",
    "삭제되기 전에 저장함. {cand} 선거 관련",
    "이거 진짜임? 선거 단톡방에서 돌고 있음",
)
EN_REUPLOAD = (
    "Reposting before it gets deleted. Election related, judge for yourself",
    "Saw this in a group chat about the election. {cand}??",
    "Sharing again because the algorithm buried it. The truth about the election",
)
KO_OFF_TOPIC = (
    "오늘 점심은 성수동 칼국수! 국물이 진하네요",
    "주말 북한산 등산 다녀왔어요. 다리가 후들후들",
    "고양이가 또 키보드 위에 앉았다",
    "새로 생긴 카페 라떼 맛집 발견",
)
EN_OFF_TOPIC = (
    "Rainy Sunday in Seoul, perfect weather for coffee",
    "Best tteokbokki in Mangwon market, no contest",
    "Weekend hike done, legs are finished",
)
KO_TAGS = ("선거2026", "투표", "대선", "김민준", "이서연", "토론")
EN_TAGS = ("election2026", "debate", "vote", "KimMinjun", "LeeSeoyeon")
OFF_TOPIC_TAGS = ("맛집", "food", "weekend", "서울", "cat")

# Planted for the XSS check: rendered pages must show this as text, never run it.
XSS_TEXT = "<script>alert(1)</script> 선거 게시판 테스트 — 이 글이 그대로 보이면 정상입니다"


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def election_text(rng: np.random.Generator, lang: str, *, days_left: int, reupload: bool = False) -> tuple[str, tuple[str, ...]]:
    """Post text (hashtags appended as #tags) and the hashtags without '#'."""
    i = int(rng.integers(2))
    if lang == "ko":
        template = _pick(rng, KO_REUPLOAD if reupload else KO_ELECTION)
        cand, other = CANDIDATES_KO[i], CANDIDATES_KO[1 - i]
        pool, main = KO_TAGS, "선거2026"
    else:
        template = _pick(rng, EN_REUPLOAD if reupload else EN_ELECTION)
        cand, other = CANDIDATES_EN[i], CANDIDATES_EN[1 - i]
        pool, main = EN_TAGS, "election2026"
    text = template.format(cand=cand, other=other, days=days_left)
    extra = [t for t in pool if t != main]
    chosen = [extra[int(k)] for k in rng.choice(len(extra), size=int(rng.integers(0, 3)), replace=False)]
    tags = ([main] if rng.random() < 0.8 else []) + chosen
    return _with_tags(text, tags), tuple(tags)


def off_topic_text(rng: np.random.Generator, lang: str) -> tuple[str, tuple[str, ...]]:
    text = _pick(rng, KO_OFF_TOPIC if lang == "ko" else EN_OFF_TOPIC)
    tags = [OFF_TOPIC_TAGS[int(k)] for k in rng.choice(len(OFF_TOPIC_TAGS), size=int(rng.integers(1, 3)), replace=False)]
    return _with_tags(text, tags), tuple(tags)


def _with_tags(text: str, tags: list[str]) -> str:
    return text + ("".join(f" #{t}" for t in tags) if tags else "")

"""Review and legal assessment, on SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from evidence.custody import events_for
from evidence.review import (
    ReviewError, assess_evidence, in_window, looks_ai_labelled, review_evidence, review_history,
)
from storage import models as m
from storage.bank import KnownFakesBank
from tests.evidence_factory import make_evidence


def test_confirm_banks_the_item_and_keeps_history(store, blobs):
    ev = make_evidence(store, blobs)
    first = review_evidence(store, ev, "confirmed", "kim", "face-swap seams at the jaw; source video found", case_id="NEC-2026-0042")
    assert first.banked == 2  # sha256 and PDQ
    bank = KnownFakesBank(store)
    with store.session() as s:
        media = store.get_media(s.get(m.Evidence, ev).media_sha256)
    [match] = bank.match("pdq", media.pdq)
    assert match.case_id == "NEC-2026-0042" and match.distance == 0

    second = review_evidence(store, ev, "dismissed", "lee", "second look: satire account, labelled")
    assert second.unbanked == 0  # a reviewer's confirmation is not undone by an automatic rule
    history = review_history(store, ev)
    assert [(r.decision, r.reviewer) for r in history] == [("confirmed", "kim"), ("dismissed", "lee")]
    with store.session() as s:
        assert s.get(m.Evidence, ev).review_status == "dismissed"
    actions = [e.action for e in events_for(store, ev)]
    assert actions == ["reviewed", "reviewed"]
    assert events_for(store, ev)[0].details["rationale"].startswith("face-swap")


def test_dismissal_takes_an_automatic_bank_entry_out(store, blobs):
    ev = make_evidence(store, blobs, seed=2)
    with store.session() as s:
        sha = s.get(m.Evidence, ev).media_sha256
    bank = KnownFakesBank(store)
    bank.add("sha256", sha, case_id="c:auto", source="verdict", media_sha256=sha)
    assert bank.match("sha256", sha)
    outcome = review_evidence(store, ev, "dismissed", "park", "a real photo; the classifier was wrong")
    assert outcome.unbanked == 1
    assert bank.match("sha256", sha) == []


@pytest.mark.parametrize("decision,reviewer,rationale,message", [
    ("maybe", "kim", "x", "decision must be one of confirmed, dismissed"),
    ("confirmed", "", "x", "reviewer"),
    ("confirmed", "kim", "  ", "rationale"),
])
def test_bad_reviews_are_refused_and_nothing_is_written(store, blobs, decision, reviewer, rationale, message):
    ev = make_evidence(store, blobs, seed=3)
    with pytest.raises(ReviewError, match=message):
        review_evidence(store, ev, decision, reviewer, rationale)
    assert review_history(store, ev) == [] and events_for(store, ev) == []


def test_unknown_record_is_named(store):
    with pytest.raises(ReviewError, match="no evidence record with id 999"):
        review_evidence(store, 999, "confirmed", "kim", "x")


def test_legal_assessment_fields_and_custody(store, blobs):
    ev = make_evidence(store, blobs, seed=4)
    row = assess_evidence(store, ev, "kim", ai_label_present=False, campaign_purpose=True, notes="공직선거법 82조의8 위반 소지")
    assert (row.ai_label_present, row.campaign_purpose, row.legal_notes) == (False, True, "공직선거법 82조의8 위반 소지")
    assert row.in_ban_window is None  # not given: left alone
    [event] = events_for(store, ev)
    assert event.action == "assessed" and event.details["after"]["campaign_purpose"] is True
    with pytest.raises(ReviewError, match="must be yes, no or unknown"):
        assess_evidence(store, ev, "kim", campaign_purpose="yes")
    with pytest.raises(ReviewError, match="nothing to assess"):
        assess_evidence(store, ev, "kim")


def test_ai_label_guess_and_ban_window():
    assert looks_ai_labelled("이 영상은 AI로 만든 패러디입니다")
    assert looks_ai_labelled("Made with AI #AIgenerated")
    assert not looks_ai_labelled("후보가 오늘 시장을 방문했다")
    start = datetime(2026, 3, 5, 15, tzinfo=timezone.utc)
    end = datetime(2026, 6, 3, 15, tzinfo=timezone.utc)
    assert in_window(datetime(2026, 5, 20, tzinfo=timezone.utc), start, end) is True
    assert in_window(datetime(2026, 1, 2, tzinfo=timezone.utc), start, end) is False
    assert in_window(datetime(2026, 1, 2, tzinfo=timezone.utc), None, None) is None

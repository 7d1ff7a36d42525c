"""Liveness re-checks against a loopback server, on SQLite and PostgreSQL: live, gone (404, 410, a
configured removal notice), error (500), and a sent takedown request resolved by the check."""
from __future__ import annotations

from datetime import timedelta

import pytest

from evidence.custody import events_for
from evidence.liveness import check_liveness, due_for_check, recheck_due
from evidence.takedown import get_takedown, load_takedown_config, set_takedown_status
from storage import models as m
from storage.db import as_utc
from tests.replay import Answer, ReplayServer
from tests.test_takedown import T0, make_records

pytestmark = pytest.mark.timeout(60)


def _requested(store, evidence_ids, status="sent") -> int:
    with store.session() as s:
        row = m.TakedownRequest(evidence_id=evidence_ids[0], evidence_ids=evidence_ids, platform="demo", created_at=T0)
        s.add(row)
        s.commit()
        rid = row.id
    set_takedown_status(store, rid, "sent", at=T0 + timedelta(days=1), actor="analyst-lee")
    if status == "acknowledged":
        set_takedown_status(store, rid, "acknowledged", at=T0 + timedelta(days=1, hours=1), actor="analyst-lee")
    return rid


def _serve(srv: ReplayServer, answers: dict[str, Answer]) -> None:
    """Answer each path with whatever `answers[path]` holds at request time (tests swap it)."""
    for path in answers:
        srv.route(path, handler=lambda _req, path=path: answers[path])


def test_live_then_gone_moves_the_request_to_removed(store, blobs, fetcher):
    with ReplayServer() as srv:
        ids = make_records(store, blobs, base=srv.base_url)
        answers = {
            "/p/p1": Answer(body="<html><p>post one</p></html>", content_type="text/html"),
            "/p/p2": Answer(body="<html><p>게시물 둘</p></html>", content_type="text/html; charset=utf-8"),
            "/media/p1.jpg": Answer(body=b"\xff\xd8jpeg", content_type="image/jpeg"),
            "/media/p2.jpg": Answer(body=b"\xff\xd8jpeg", content_type="image/jpeg"),
        }
        _serve(srv, answers)
        rid = _requested(store, ids, "acknowledged")

        first = check_liveness(store, fetcher, ids, actor="system")
        assert [(c.evidence_id, c.state) for c in first] == [(ids[0], "live"), (ids[0], "live"), (ids[1], "live"), (ids[1], "live")]
        assert {c.url for c in first} >= {f"{srv.base_url}/p/p1", f"{srv.base_url}/p/p2"}
        assert get_takedown(store, rid).status == "acknowledged"

        # One post goes: the request (about both) stays open until every post is gone.
        answers["/p/p1"] = Answer(status=404, body="not found", content_type="text/plain")
        second = check_liveness(store, fetcher, ids, actor="system")
        post_states = {c.evidence_id: (c.state, c.http_status) for c in second if "/p/" in c.url}
        assert post_states == {ids[0]: ("gone", 404), ids[1]: ("live", None)}
        assert get_takedown(store, rid).status == "acknowledged"

        answers["/p/p2"] = Answer(status=410, body="gone", content_type="text/plain")
        third = check_liveness(store, fetcher, [ids[1]], actor="system")
        gone = [c for c in third if c.url.endswith("/p/p2")][0]
        assert (gone.state, gone.http_status) == ("gone", 410)

    request = get_takedown(store, rid)
    assert request.status == "removed"
    assert as_utc(request.resolved_at) == as_utc(gone.checked_at)  # dated by the check that found it gone
    assert "liveness re-check found the content gone" in request.notes
    for evidence_id in ids:
        actions = [e.action for e in events_for(store, evidence_id)]
        assert actions.count("liveness_checked") == (3 if evidence_id == ids[1] else 2)
        assert actions[-1] == "takedown_removed"
    checked = [e for e in events_for(store, ids[1]) if e.action == "liveness_checked"][-1]
    assert {c["state"] for c in checked.details["checks"]} == {"gone", "live"}  # the post gone, its media not


def test_server_error_is_recorded_as_error_and_resolves_nothing(store, blobs, fetcher):
    with ReplayServer() as srv:
        ids = make_records(store, blobs, base=srv.base_url)
        srv.route("/p/p1", status=500, body="upstream broke", content_type="text/plain")
        srv.route("/media/p1.jpg", body=b"\xff\xd8jpeg", content_type="image/jpeg")
        rid = _requested(store, ids[:1])
        checks = check_liveness(store, fetcher, ids[:1], actor="system")
    post = [c for c in checks if c.url.endswith("/p/p1")][0]
    assert post.state == "error" and post.http_status == 500 and "HTTP 500" in post.detail
    # The hostile media URL of this record (quotes, a script tag) is fetched as a plain URL.
    media = [c for c in checks if c.url != post.url][0]
    assert media.state == "live" and "<script>" in media.url
    assert get_takedown(store, rid).status == "sent"


def test_removal_notice_counts_only_when_configured(store, blobs, fetcher):
    config = load_takedown_config()  # demo: removed_markers include "This post has been removed"
    with ReplayServer() as srv:
        ids = make_records(store, blobs, base=srv.base_url)
        srv.route("/p/p2", body="<html><h1>This post has been removed</h1></html>", content_type="text/html")
        srv.route("/media/p2.jpg", body=b"\xff\xd8jpeg", content_type="image/jpeg")
        rid = _requested(store, [ids[1]])
        plain = check_liveness(store, fetcher, [ids[1]], actor="system")
        assert [c.state for c in plain] == ["live", "live"]  # without config, a 200 page is live
        assert get_takedown(store, rid).status == "sent"
        marked = check_liveness(store, fetcher, [ids[1]], actor="system", config=config)
    assert marked[0].state == "gone" and "This post has been removed" in marked[0].detail
    assert marked[1].state == "live"  # markers are read on the post page only
    assert get_takedown(store, rid).status == "removed"


def test_due_for_check_and_unknown_ids(store, blobs, fetcher):
    with ReplayServer() as srv:
        ids = make_records(store, blobs, base=srv.base_url)
        for path in ("/p/p1", "/p/p2"):
            srv.route(path, body="<html>ok</html>", content_type="text/html")
        assert due_for_check(store, 3600) == ids  # never checked
        check_liveness(store, fetcher, [ids[1]], actor="system")
        assert due_for_check(store, 3600) == [ids[0]]
        later = m.utcnow() + timedelta(hours=2)
        assert due_for_check(store, 3600, now=later) == [ids[0], ids[1]]  # never checked first
        done = recheck_due(store, fetcher, 3600, actor="scheduler")
        assert {c.evidence_id for c in done} == {ids[0]}
        assert due_for_check(store, 3600) == []
    with pytest.raises(ValueError, match="no evidence record with id 999"):
        check_liveness(store, fetcher, [ids[0], 999], actor="system")
    with pytest.raises(ValueError, match="must be positive"):
        due_for_check(store, 0)

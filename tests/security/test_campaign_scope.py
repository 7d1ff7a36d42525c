"""Issue 16, finding 8: per-campaign permissions. Once memberships exist, an investigator sees only
the campaigns they belong to (gallery, API, evidence, blobs, stats, takedowns, image search);
admins see all; with no memberships at all everyone sees everything, as before."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app as cli
from storage import models as m
from tests.evidence_factory import jpeg, make_evidence
from tests.test_console_api import client_for, console, csrf_of, items_of  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def two_teams(console, store, blobs):
    a = make_evidence(store, blobs, seed=1, campaign="team-a")
    b = make_evidence(store, blobs, seed=2, campaign="team-b")
    with store.session() as s:
        media_b = s.get(m.Evidence, b).media_sha256
    return a, b, media_b


def _grant(store, *args):
    result = CliRunner().invoke(cli, ["user", *args, "--db", store.url])
    assert result.exit_code == 0, result.output
    return result.output


def test_without_memberships_everyone_sees_everything(console, two_teams):
    a, b, _ = two_teams
    ivan = client_for(console, "ivan")
    assert sorted(items_of(ivan.get("/gallery").text)) == sorted([a, b])


def test_investigator_sees_only_their_campaigns(console, store, two_teams):
    a, b, media_b = two_teams
    assert "now sees campaign team-a" in _grant(store, "grant", "ivan", "team-a")
    ivan, vera, ada = (client_for(console, n) for n in ("ivan", "vera", "ada"))
    assert items_of(ivan.get("/gallery").text) == [a]
    assert ivan.get("/gallery", params={"campaign": "team-b"}).status_code == 404
    assert [i["evidence_id"] for i in ivan.get("/api/v1/evidence").json()["items"]] == [a]
    assert ivan.get(f"/evidence/{a}").status_code == 200
    for path in (f"/evidence/{b}", f"/api/v1/evidence/{b}", f"/blob/{media_b}", "/api/v1/campaigns/team-b/stats",
                 "/?campaign=team-b"):
        assert ivan.get(path).status_code == 404, path
    token = csrf_of(ivan)
    denied = ivan.post(f"/api/v1/evidence/{b}/review", json={"decision": "confirmed", "rationale": "x"},
                       headers={"x-csrf-token": token})
    assert denied.status_code == 404
    built = ivan.post("/api/v1/takedowns", json={"evidence_ids": [b], "platform": "demo"}, headers={"x-csrf-token": token})
    assert built.status_code == 404
    search = ivan.post("/api/v1/search/image", files={"image": ("q.jpg", jpeg(2), "image/jpeg")},
                       headers={"x-csrf-token": token}).json()
    assert search["matches"] == []  # team-b's identical image is not revealed
    assert items_of(vera.get("/gallery").text) == []  # a member of nothing sees nothing
    assert sorted(items_of(ada.get("/gallery").text)) == sorted([a, b])  # admins see all
    assert ada.get(f"/blob/{media_b}").status_code == 200
    made = ada.post("/api/v1/takedowns", json={"evidence_ids": [b], "platform": "demo", "allow_unreviewed": True},
                    headers={"x-csrf-token": csrf_of(ada)})
    assert made.status_code == 201, made.text
    rid = made.json()["id"]
    assert ivan.get(f"/api/v1/takedowns/{rid}").status_code == 404
    assert ivan.get(f"/takedowns/{rid}/packet.zip").status_code == 404
    assert rid not in [t["id"] for t in ivan.get("/api/v1/takedowns").json()["items"]]
    assert rid in [t["id"] for t in ada.get("/api/v1/takedowns").json()["items"]]
    assert "no longer sees" in _grant(store, "ungrant", "ivan", "team-a")

"""What the campaign driver remembers stays bounded, and forgetting costs a fetch, never a link.

The driver keeps a map of recently fetched URLs (so a re-posted URL is sighted without another
fetch) capped at URL_SHA_MAX; a URL leaves the set of queued URLs once its fetch comes back. The
end-to-end checks run a small campaign on local Ray against the fake platform, where two posts
share an image URL on different pages.
"""
from __future__ import annotations

import time
from collections import Counter

import pytest
from sqlmodel import select

from orchestrator import campaign as campaign_module
from orchestrator.campaign import LruMap
from storage import models as m
from storage.db import Store
from tests.fakeplatform import FakePlatform
from tests.test_resume import run, spec_data


def test_lru_map_keeps_the_most_recently_used_keys():
    seen = LruMap(2)
    seen["a"], seen["b"] = "1", "2"
    assert seen.get("a") == "1"  # "a" is now the most recent
    seen["c"] = "3"
    assert dict(seen) == {"a": "1", "c": "3"}
    assert seen.get("b") is None and seen.get("b", "x") == "x"
    seen["a"] = "4"  # overwriting refreshes too
    seen["d"] = "5"
    assert dict(seen) == {"a": "4", "d": "5"}


class SharedUrlPlatform(FakePlatform):
    """Serves every page after the first only once /media/rally.png has been asked for, and a
    second later: the fetch is back in the driver before p0001 shows the same URL again."""

    def __init__(self) -> None:
        super().__init__(page_size=1)
        self.pages_served = 0

    def search(self, term: str) -> list[tuple]:
        self.pages_served += 1
        if self.pages_served > 1:
            deadline = time.monotonic() + 30
            while not self.hits["/media/rally.png"] and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.0)
        return super().search(term)


def _campaign(tmp_path, base_url: str) -> dict:
    data = spec_data(tmp_path, base_url, name="bounds")
    data.pop("keywords")
    data["hashtags"] = ["선거2026"]  # p0008 (page 1) and p0001 (page 3) both show /media/rally.png
    data["sources"][0]["params"]["page_size"] = 1
    return data


def _sightings(db_url: str) -> tuple[Counter, dict[str, str], list[str]]:
    store = Store(db_url)
    try:
        with store.session() as s:
            shas = Counter(md.sha256 for md in s.exec(select(m.Media)).all())
            posts = {p.id: p.post_id for p in s.exec(select(m.Post)).all()}
            linked = {(posts[sg.post_pk], sg.media_url.rsplit("/", 1)[1]): sg.media_sha256
                      for sg in s.exec(select(m.Sighting)).all()}
            pending = [t.url for t in s.exec(select(m.MediaTask)).all() if t.state == "pending"]
    finally:
        store.close()
    return shas, linked, pending


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("cap", [campaign_module.URL_SHA_MAX, 0])
def test_a_shared_url_is_linked_to_every_post_whatever_the_driver_remembers(tmp_path, monkeypatch, cap):
    monkeypatch.setattr(campaign_module, "URL_SHA_MAX", cap)
    with SharedUrlPlatform() as fake:
        data = _campaign(tmp_path, fake.base_url)
        campaign, report = run(data)
        fetches = fake.hits["/media/rally.png"]
    print(f"cap {cap}: /media/rally.png fetched {fetches} time(s)")
    assert campaign.url_sha.capacity == cap and len(campaign.url_sha) <= cap
    shas, linked, pending = _sightings(data["storage"]["database"])
    assert not pending, "no media fetch is left owed"
    assert max(shas.values()) == 1, "each item is stored once"
    rally = linked[("p0008", "rally.png")]
    assert linked[("p0001", "rally.png")] == rally, "both posts point at the one stored item"
    # Remembered: the second post is sighted without a fetch. Forgotten: fetched again, and exact
    # dedup lands the bytes on the item already stored.
    assert fetches == (1 if cap else 2)
    assert report["counts"]["duplicates_exact"] == (0 if cap else 1)

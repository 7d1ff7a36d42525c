"""The bundled demo platform: the generated world, its planted truth, the HTTP API and the JS pages."""
from __future__ import annotations

import collections
import hashlib
import io
import itertools
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from PIL import Image

from demo_platform.model import post_matches, words_of
from demo_platform.server import DemoPlatform
from demo_platform.world import DEFAULT_SEARCH_TERMS, build_world

TRAINED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def world():
    return build_world(seed=7)  # the default world, ~10-15 s once for the module


@pytest.fixture(scope="module")
def platform(world):
    with DemoPlatform(world) as p:
        yield p


@pytest.fixture(scope="module")
def client(platform):
    with httpx.Client(base_url=platform.base_url, timeout=10) as c:
        yield c


def _pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _phash(data: bytes):
    import imagehash

    with Image.open(io.BytesIO(data)) as im:
        return imagehash.phash(im.convert("RGB"))


# -- the world -----------------------------------------------------------------------------

def test_same_seed_gives_same_world():
    a, b = build_world(seed=3, n_posts=24), build_world(seed=3, n_posts=24)
    assert [(p.id, p.handle, p.text, p.created_at, p.media) for p in a.posts] == \
           [(p.id, p.handle, p.text, p.created_at, p.media) for p in b.posts]
    assert a.media.keys() == b.media.keys() and a.truth == b.truth
    for path, blob in a.media.items():
        if a.truth[path].fake_kind == "c2pa":
            # c2pa-rs salts manifests randomly: bytes differ, pixels must not.
            assert np.array_equal(_pixels(blob.data), _pixels(b.media[path].data)), path
        else:
            assert blob.sha256 == b.media[path].sha256, path
    other = build_world(seed=4, n_posts=24)
    assert {m.sha256 for m in other.media.values()}.isdisjoint(
        {m.sha256 for p, m in a.media.items() if a.truth[p].label != "broken"})


def test_too_small_world_is_refused():
    with pytest.raises(ValueError, match="n_posts"):
        build_world(n_posts=5)


def test_world_shape_and_media_mix(world):
    assert len(world.posts) == 120
    assert 150 <= len(world.media) <= 200
    kinds = collections.Counter(t.kind for t in world.truth.values())
    assert 10 <= kinds["video"] <= 14
    labels = collections.Counter(t.label for t in world.truth.values())
    assert 0.40 <= labels["real"] / len(world.truth) <= 0.50
    assert labels["broken"] == 2
    fake_kinds = collections.Counter(t.fake_kind for t in world.truth.values() if t.label == "fake")
    assert set(fake_kinds) == {"c2pa", "watermark", "manipulated", "reupload"}
    assert any(t.kind == "video" and t.fake_kind == "manipulated" for t in world.truth.values())
    assert any(t.kind == "video" and t.fake_kind == "reupload" for t in world.truth.values())
    assert 6 <= len(world.accounts) <= 8
    langs = collections.Counter(p.lang for p in world.posts)
    assert langs["ko"] > 20 and langs["en"] > 20
    media_counts = collections.Counter(min(len(p.media), 2) for p in world.posts)
    assert media_counts[0] > 0 and media_counts[1] > 0 and media_counts[2] > 0
    assert max(len(p.media) for p in world.posts) == 3
    for p in world.posts:
        assert p.created_at.tzinfo is not None and p.created_at.utcoffset().total_seconds() == 0
        assert "2026-04-01" <= p.created_at.date().isoformat() < "2026-06-03"
    assert any("<script>alert(1)</script>" in p.text for p in world.posts)
    off_topic = [p for p in world.posts if p.topic == "off_topic"]
    assert off_topic and not any(post_matches(p, t) for p in off_topic for t in world.search_terms)


def test_truth_covers_every_media_item(world):
    assert set(world.truth) == set(world.media)
    carried = [m for p in world.posts for m in p.media]
    assert len(carried) == len(set(carried)) and set(carried) == set(world.media)
    by_sha = world.truth_by_sha256()
    assert len(by_sha) == len(world.media)
    for path, blob in world.media.items():
        assert path.startswith("/media/") and by_sha[hashlib.sha256(blob.data).hexdigest()] == world.truth[path]
    poster = {m: p for p in world.posts for m in p.media}
    for path, t in world.truth.items():
        assert t.kind == world.media[path].kind
        assert (t.label == "fake") == (t.fake_kind is not None)
        if t.fake_kind == "reupload":
            original = world.truth[t.original]
            assert original.fake_kind in {"c2pa", "watermark", "manipulated"} and original.kind == t.kind
            assert poster[path].handle != poster[t.original].handle
            assert poster[path].created_at > poster[t.original].created_at
            assert t.transform
        else:
            assert t.original is None


def test_search_terms_reach_nearly_all_planted_media(world):
    assert world.search_terms == DEFAULT_SEARCH_TERMS
    reached = {m for term in world.search_terms for p in world.search(term) for m in p.media}
    fakes = {p for p, t in world.truth.items() if t.label == "fake"}
    reals = {p for p, t in world.truth.items() if t.label == "real"}
    assert fakes <= reached
    assert len(reals & reached) >= 0.85 * len(reals)


def test_search_rule():
    from demo_platform.model import WorldPost
    import datetime as dt

    post = WorldPost(id="p1", handle="h", text="이번 선거가 중요합니다 Election day #선거2026",
                     created_at=dt.datetime(2026, 5, 1, tzinfo=dt.timezone.utc), hashtags=("선거2026", "Vote"),
                     lang="ko", media=(), search_words=words_of("이번 선거가 중요합니다 Election day #선거2026"))
    for q in ("선거", "election", "ELECTION", "#선거2026", "선거2026", "#vote", "vote", "선거 election"):
        assert post_matches(post, q), q
    for q in ("elect", "#선거", "거가", "debate", "", "선거 debate"):
        assert not post_matches(post, q), q


def test_images_are_distinct_unless_related(world):
    originals = [p for p, t in world.truth.items()
                 if t.kind == "image" and t.label != "broken" and t.fake_kind != "reupload"]
    hashes = {p: _phash(world.media[p].data) for p in originals}
    closest = min(hashes[a] - hashes[b] for a, b in itertools.combinations(originals, 2))
    assert closest > 16


def test_reuploads_stay_close_to_their_original(world):
    for path, t in world.truth.items():
        if t.fake_kind != "reupload":
            continue
        copy, original = world.media[path], world.media[t.original]
        assert copy.sha256 != original.sha256
        if t.kind == "image":
            assert copy.content_type == "image/jpeg"
            assert _phash(copy.data) - _phash(original.data) <= 10, path
            h, w = _pixels(copy.data).shape[:2]
            oh, ow = _pixels(original.data).shape[:2]
            assert 0.5 * ow <= w < ow and 0.5 * oh <= h < oh
        else:
            from demo_platform.video import decode_frames

            a, b = decode_frames(copy.data), decode_frames(original.data)
            assert len(a) == len(b) and a[0].shape != b[0].shape


def test_c2pa_manifests_declare_trained_algorithmic_media(world):
    import json

    import c2pa

    signed = [p for p, t in world.truth.items() if t.fake_kind == "c2pa"]
    assert len(signed) >= 10
    for path in signed:
        with c2pa.Reader("image/jpeg", io.BytesIO(world.media[path].data)) as reader:
            store = json.loads(reader.json())
            assert reader.get_validation_state() == "Valid", path
        active = store["manifests"][store["active_manifest"]]
        actions = [a for asr in active["assertions"] if asr["label"].startswith("c2pa.actions")
                   for a in asr["data"]["actions"]]
        assert any(a.get("digitalSourceType") == TRAINED for a in actions)
        assert active["signature_info"]["alg"].lower() == "es256"
    # Real photos carry no manifest.
    real = next(p for p, t in world.truth.items() if t.label == "real" and t.kind == "image")
    with pytest.raises(c2pa.C2paError):
        c2pa.Reader("image/jpeg", io.BytesIO(world.media[real].data))


def test_signing_certificate_is_fit_for_c2pa():
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from demo_platform.provenance import signing_identity

    ident = signing_identity(7)
    assert ident == signing_identity(7)  # derived from the seed: same PKI every time
    leaf, ca = x509.load_pem_x509_certificates(ident.chain_pem.encode())
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.issuer == ca.subject


def test_watermarks_decode_from_served_bytes(world):
    import cv2
    from imwatermark import WatermarkDecoder

    from detectors.watermark_payloads import KNOWN_WATERMARKS

    marked = [(p, t) for p, t in world.truth.items() if t.fake_kind == "watermark"]
    assert len(marked) >= 10
    seen = set()
    for path, t in marked:
        blob = world.media[path]
        assert blob.content_type == "image/png"
        name = t.transform.split()[2]
        payload = KNOWN_WATERMARKS[name]
        bgr = cv2.imdecode(np.frombuffer(blob.data, np.uint8), cv2.IMREAD_COLOR)
        arr = np.ascontiguousarray(bgr[:, :, ::-1]) if "RGB array" in t.transform else bgr
        if payload.payload_type == "bytes":
            got = WatermarkDecoder("bytes", payload.length_bits).decode(arr, "dwtDct")
            assert got == bytes(int("".join(map(str, payload.bits[i:i + 8])), 2) for i in range(0, len(payload.bits), 8))
        else:
            got = WatermarkDecoder("bits", payload.length_bits).decode(arr, "dwtDct")
            assert tuple(int(b) for b in got) == payload.bits, path
        seen.add((name, "RGB array" in t.transform))
    assert {"stable_diffusion_v1", "sdxl"} <= {n for n, _ in seen}


def test_videos_are_short_small_h264(world):
    import av

    videos = [p for p, t in world.truth.items() if t.kind == "video"]
    for path in videos:
        blob = world.media[path]
        assert blob.content_type == "video/mp4" and len(blob.data) < 400_000
        with av.open(io.BytesIO(blob.data)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
            assert abs(float(stream.average_rate) - 10) < 0.5
            frames = list(container.decode(video=0))
        assert 18 <= len(frames) <= 22


def test_video_encoding_is_reproducible():
    from demo_platform.video import encode_mp4, render_clip

    frames = render_clip(np.random.default_rng(5), manipulated=True)
    assert encode_mp4(frames) == encode_mp4(frames) == encode_mp4(frames)
    with pytest.raises(ValueError, match="multiple of 128"):
        encode_mp4([f[:, :320] for f in frames])


def test_broken_media(world):
    broken = {p: world.media[p] for p, t in world.truth.items() if t.label == "broken"}
    assert len(broken) == 2
    html_items = [b for b in broken.values() if b.data.lstrip().lower().startswith(b"<!doctype html")]
    assert len(html_items) == 1 and html_items[0].content_type == "image/jpeg"
    jpeg = next(b for b in broken.values() if b not in html_items)
    assert jpeg.data[:2] == b"\xff\xd8" and jpeg.content_type == "image/jpeg"
    with pytest.raises(OSError):
        with Image.open(io.BytesIO(jpeg.data)) as im:
            im.load()


# -- the HTTP API --------------------------------------------------------------------------

def _all_pages(client, path, params, limit):
    seen, cursor, pages = [], None, 0
    while True:
        r = client.get(path, params={**params, "limit": limit, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["posts"]) <= limit
        seen += body["posts"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return seen, pages
        assert isinstance(cursor, str) and pages < 100


def test_search_pages_with_cursor(world, client, platform):
    posts, pages = _all_pages(client, "/api/v1/search", {"q": "election"}, limit=7)
    ids = [p["id"] for p in posts]
    assert len(ids) == len(set(ids)), "a post came twice"
    assert ids == [p.id for p in world.search("election")] and pages > 2
    stamps = [p["created_at"] for p in posts]
    assert stamps == sorted(stamps, reverse=True)
    post = posts[0]
    assert set(post) == {"id", "url", "account", "text", "created_at", "hashtags", "lang", "media"}
    assert post["url"] == f"{platform.base_url}/p/{post['id']}"
    assert post["created_at"].endswith("Z") and set(post["account"]) == {"handle", "display_name"}
    assert all(not t.startswith("#") for p in posts for t in p["hashtags"])
    for m in (m for p in posts for m in p["media"]):
        assert m["url"].startswith(platform.base_url + "/media/") and m["type"] in {"image", "video"}


def test_default_limit_and_cap(client):
    assert len(client.get("/api/v1/search", params={"q": "선거"}).json()["posts"]) == 20
    assert len(client.get("/api/v1/search", params={"q": "선거", "limit": 1000}).json()["posts"]) <= 100
    r = client.get("/api/v1/search", params={"q": "선거", "limit": 0})
    assert r.status_code == 400 and "limit" in r.json()["error"]
    r = client.get("/api/v1/search", params={"q": " "})
    assert r.status_code == 400 and "error" in r.json()


def test_korean_and_hashtag_queries(world, client):
    korean = client.get("/api/v1/search?q=" + quote("선거") + "&limit=100").json()["posts"]
    assert korean and [p["id"] for p in korean] == [p.id for p in world.search("선거")]
    assert all("선거" in p["text"] for p in korean)
    with_hash = client.get("/api/v1/search", params={"q": "#선거2026", "limit": 100}).json()["posts"]
    without = client.get("/api/v1/search", params={"q": "선거2026", "limit": 100}).json()["posts"]
    assert with_hash and {p["id"] for p in with_hash} <= {p["id"] for p in without}
    assert all("선거2026" in p["hashtags"] for p in with_hash)
    upper = client.get("/api/v1/search", params={"q": "ELECTION", "limit": 100}).json()["posts"]
    assert [p["id"] for p in upper] == [p.id for p in world.search("election")]


def test_bad_cursor_is_a_400(client):
    for cursor in ("garbage", "eyJmIjoieCJ9.deadbeef", "!!!.???"):
        r = client.get("/api/v1/search", params={"q": "선거", "cursor": cursor})
        assert r.status_code == 400 and "cursor" in r.json()["error"]
    first = client.get("/api/v1/search", params={"q": "선거", "limit": 5}).json()["next_cursor"]
    r = client.get("/api/v1/search", params={"q": "election", "cursor": first})
    assert r.status_code == 400 and "different query" in r.json()["error"]
    tampered = first[:-1] + ("0" if first[-1] != "0" else "1")
    assert client.get("/api/v1/search", params={"q": "선거", "cursor": tampered}).status_code == 400


def test_post_and_account_routes(world, client):
    post = world.posts[10]
    body = client.get(f"/api/v1/posts/{post.id}").json()
    assert body["id"] == post.id and body["text"] == post.text
    assert [m["url"].split("/", 3)[3] for m in body["media"]] == [m.lstrip("/") for m in post.media]
    r = client.get("/api/v1/posts/p9999")
    assert r.status_code == 404 and "error" in r.json()
    feed, _ = _all_pages(client, f"/api/v1/accounts/{post.handle}/posts", {}, limit=4)
    assert [p["id"] for p in feed] == [p.id for p in world.account_posts(post.handle)]
    assert client.get("/api/v1/accounts/nobody/posts").status_code == 404
    assert client.get("/api/v1/nothing").status_code == 404


def test_media_served_with_declared_types(world, client):
    by_type = {}
    for path, blob in world.media.items():
        by_type.setdefault(blob.content_type, path)
    assert set(by_type) == {"image/jpeg", "image/png", "video/mp4"}
    for ctype, path in by_type.items():
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"] == ctype
        assert r.content == world.media[path].data
        assert int(r.headers["content-length"]) == len(r.content)
        etag = r.headers["etag"]
        assert client.get(path, headers={"If-None-Match": etag}).status_code == 304
    html_path = next(p for p, b in world.media.items() if b.data.startswith(b"<!DOCTYPE html"))
    r = client.get(html_path)
    assert r.headers["content-type"] == "image/jpeg" and r.content.startswith(b"<!DOCTYPE html")
    video = by_type["video/mp4"]
    r = client.get(video, headers={"Range": "bytes=0-99"})
    assert r.status_code == 206 and r.content == world.media[video].data[:100]
    assert r.headers["content-range"] == f"bytes 0-99/{len(world.media[video].data)}"
    assert client.get("/media/nope.jpg").status_code == 404
    assert client.head(by_type["image/png"]).headers["content-length"] == str(len(world.media[by_type["image/png"]].data))


def test_serves_concurrent_requests(world, platform):
    paths = list(world.media)[:40]

    def fetch(path):
        with httpx.Client(base_url=platform.base_url, timeout=10) as c:
            return hashlib.sha256(c.get(path).content).hexdigest()

    with ThreadPoolExecutor(max_workers=12) as pool:
        got = list(pool.map(fetch, paths))
    assert got == [world.media[p].sha256 for p in paths]


def test_pages_robots_and_host_header(world, client, platform):
    assert "Allow: /" in client.get("/robots.txt").text
    index = client.get("/").text
    assert "/search?q=" in index and "/@minjun_kim" in index
    for path in ("/search?q=x", "/tag/debate", "/@minjun_kim", f"/p/{world.posts[0].id}"):
        r = client.get(path)
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        assert 'class="post"' not in r.text and "/static/app.js" in r.text
    assert client.get("/p/p9999").status_code == 404
    assert client.get("/@nobody").status_code == 404
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    body = client.get("/api/v1/search", params={"q": "선거", "limit": 1},
                      headers={"Host": "demo.example:8080"}).json()
    assert body["posts"][0]["url"].startswith("http://demo.example:8080/p/")
    body = client.get("/api/v1/search", params={"q": "선거", "limit": 1},
                      headers={"Host": "evil\"><script>"}).json()
    assert body["posts"][0]["url"].startswith(platform.base_url)


def test_start_stop_and_port_zero(world):
    p = DemoPlatform(world)
    url = p.start()
    assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
    with pytest.raises(RuntimeError):
        p.start()
    assert httpx.get(url + "/robots.txt").status_code == 200
    p.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/robots.txt", timeout=2)
    p.stop()  # idempotent


# -- the JavaScript pages in a real browser ------------------------------------------------

def _browser():
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is required in CI")
        pytest.skip(f"no Chromium at {CHROMIUM}")
    playwright = pytest.importorskip("playwright.sync_api")
    return playwright.sync_playwright()


def _scroll_to_end(page, max_rounds: int = 80) -> None:
    for _ in range(max_rounds):
        if page.query_selector("#end-of-feed"):
            return
        page.mouse.wheel(0, 4000)
        page.wait_for_timeout(120)


@pytest.mark.timeout(120)
def test_js_pages_render_posts_only_in_the_browser(world, platform, client):
    term = "선거"
    raw = client.get("/search?q=" + quote(term)).text
    assert "article" not in raw and "data-post-id" not in raw
    expected = [p.id for p in world.search(term)]
    assert len(expected) > 10  # more than one page of 10: scrolling must load more
    dialogs = []
    with _browser() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(platform.base_url + "/search?q=" + quote(term))
            page.wait_for_selector("article.post")
            first_batch = page.locator("article.post").count()
            assert first_batch < len(expected)  # infinite scroll: not everything at once
            _scroll_to_end(page)
            assert page.query_selector("#end-of-feed")
            ids = page.eval_on_selector_all("article.post", "els => els.map(e => e.dataset.postId)")
            assert ids == expected
            post = page.locator("article.post").first
            assert post.locator("a.permalink").get_attribute("href") == f"/p/{expected[0]}"
            assert post.locator("span.account").get_attribute("data-handle")
            assert post.locator("time").get_attribute("datetime").endswith("Z")
            assert page.locator("img.media").count() > 0 and page.locator("video.media").count() > 0
            assert page.locator("video.media").first.get_attribute("controls") is not None
            assert page.locator("a.hashtag").first.inner_text().startswith("#")

            xss = next(p for p in world.posts if "<script>" in p.text)
            page.goto(f"{platform.base_url}/p/{xss.id}")
            page.wait_for_selector("article.post")
            assert "<script>alert(1)</script>" in page.locator("article.post div.text").inner_text()
            assert page.locator("article.post div.text script").count() == 0

            handle = world.posts[0].handle
            page.goto(f"{platform.base_url}/@{handle}")
            page.wait_for_selector("article.post")
            _scroll_to_end(page)
            handles = page.eval_on_selector_all("span.account", "els => els.map(e => e.dataset.handle)")
            assert handles and set(handles) == {handle}
            assert len(handles) == len(world.account_posts(handle))

            page.goto(platform.base_url + "/tag/" + quote("선거2026"))
            page.wait_for_selector("article.post")
            _scroll_to_end(page)
            assert page.locator("article.post").count() == len(world.search("#선거2026"))
        finally:
            browser.close()
    assert dialogs == [], "page ran post text as script"


def test_browser_works_from_a_worker_thread(platform):
    """Agents drive the browser from worker threads; the page must render there too."""
    errors: list[BaseException] = []
    counts: list[int] = []

    def run():
        try:
            with _browser() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page()
                page.goto(platform.base_url + "/search?q=election")
                page.wait_for_selector("article.post")
                counts.append(page.locator("article.post").count())
                browser.close()
        except BaseException as exc:  # noqa: BLE001 (re-raised below in the test thread)
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join(90)
    if errors and isinstance(errors[0], pytest.skip.Exception):
        raise errors[0]
    assert not errors, errors
    assert counts and counts[0] > 0

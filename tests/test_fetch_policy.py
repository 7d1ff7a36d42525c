"""The fetcher's politeness policy against loopback servers: robots.txt, per-host limits,
conditional requests, retries, content decoding and counters."""
from __future__ import annotations

import gzip
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest

from agents.base import Drop, MediaRef
from agents.fetch import Fetched, FetchError, Fetcher, FetchPolicy, default_user_agent
from tests.replay import Answer, ReplayServer

pytestmark = pytest.mark.timeout(30)

LOOPBACK = ("127.0.0.0/8",)


def policy(**overrides) -> FetchPolicy:
    settings = dict(allow_networks=LOOPBACK, timeout_s=2, total_timeout_s=5, backoff_s=0.05)
    settings.update(overrides)
    return FetchPolicy(**settings)


def image(url: str) -> MediaRef:
    return MediaRef(url=url, kind="image")


@pytest.fixture
def srv():
    with ReplayServer() as s:
        s.route("/img.jpg", body=b"\xff\xd8\xff fake jpeg", content_type="image/jpeg")
        s.route("/api", json_body={"ok": True})
        yield s


# -- robots.txt ------------------------------------------------------------------------------


def test_disallowed_paths_are_refused_and_counted(srv):
    srv.route("/robots.txt", body="User-agent: *\nDisallow: /private\n", content_type="text/plain")
    srv.route("/private/a.jpg", body=b"secret", content_type="image/jpeg")
    with Fetcher(policy()) as f:
        drop = f.fetch_media(image(srv.base_url + "/private/a.jpg"))
        with pytest.raises(FetchError) as err:
            f.get_json(srv.base_url + "/private/api")
        assert isinstance(f.fetch_media(image(srv.base_url + "/img.jpg")), Fetched)
        assert f.get_json(srv.base_url + "/api") == {"ok": True}
        counters = dict(f.counters)
    assert isinstance(drop, Drop) and (drop.stage, drop.reason) == ("fetch", "robots.txt disallows")
    assert "robots.txt disallows this path for deepwatch" in drop.detail
    assert err.value.reason == "robots.txt disallows"
    assert srv.hits("/private/a.jpg") == [] and srv.hits("/private/api") == []
    assert len(srv.hits("/robots.txt")) == 1  # once per origin, then cached
    assert counters["robots_refused"] == 2 and counters["robots_fetches"] == 1


def test_the_deepwatch_group_wins_over_the_star_group(srv):
    srv.route("/robots.txt", content_type="text/plain",
              body="User-agent: *\nDisallow: /\n\nUser-agent: deepwatch\nDisallow: /drafts/\n")
    with Fetcher(policy()) as f:
        assert isinstance(f.fetch_media(image(srv.base_url + "/img.jpg")), Fetched)
        assert f.fetch_media(image(srv.base_url + "/drafts/x.jpg")).reason == "robots.txt disallows"


def test_missing_robots_txt_allows_everything(srv):
    with Fetcher(policy()) as f:
        assert f.get_json(srv.base_url + "/api") == {"ok": True}
    [robots] = srv.hits("/robots.txt")  # asked for once, got the replay server's 404
    assert "deepwatch" in robots.headers["user-agent"]


def test_robots_txt_5xx_disallows_everything_for_a_while(srv):
    state = {"status": 503}
    srv.route("/robots.txt", handler=lambda _r: Answer(status=state["status"], body=b"", content_type="text/plain"))
    with Fetcher(policy(robots_error_ttl_s=0.5)) as f:
        drop = f.fetch_media(image(srv.base_url + "/img.jpg"))
        assert drop.reason == "robots.txt disallows"
        assert "answered HTTP 503" in drop.detail and "RFC 9309" in drop.detail
        assert f.fetch_media(image(srv.base_url + "/img.jpg")).reason == "robots.txt disallows"
        assert len(srv.hits("/robots.txt")) == 1  # the failure is remembered, not re-asked
        state["status"] = 404
        time.sleep(0.6)
        assert isinstance(f.fetch_media(image(srv.base_url + "/img.jpg")), Fetched)
    assert len(srv.hits("/robots.txt")) == 2
    assert len(srv.hits("/img.jpg")) == 1


def test_unreachable_robots_txt_pauses_the_host(srv):
    def silent_robots(_request):
        time.sleep(1.5)
        return Answer(body=b"", content_type="text/plain")

    srv.route("/robots.txt", handler=silent_robots)
    with Fetcher(policy(timeout_s=0.5)) as f:
        first = f.fetch_media(image(srv.base_url + "/img.jpg"))
        started = time.monotonic()
        second = f.fetch_media(image(srv.base_url + "/img.jpg"))
        assert time.monotonic() - started < 0.2  # answered from the pause, no new wait
    assert first.reason == "timeout" and second.reason == "timeout"
    assert "host paused" in second.detail
    assert len(srv.hits("/robots.txt")) == 1 and srv.hits("/img.jpg") == []


def test_robots_txt_is_refetched_after_its_ttl(srv):
    rules = {"text": "User-agent: *\nDisallow: /img.jpg\n"}
    srv.route("/robots.txt", handler=lambda _r: Answer(body=rules["text"], content_type="text/plain"))
    with Fetcher(policy(robots_ttl_s=0.3)) as f:
        assert f.fetch_media(image(srv.base_url + "/img.jpg")).reason == "robots.txt disallows"
        rules["text"] = "User-agent: *\nAllow: /\n"
        time.sleep(0.4)
        assert isinstance(f.fetch_media(image(srv.base_url + "/img.jpg")), Fetched)


def test_robots_txt_applies_to_every_redirect_hop(srv):
    with ReplayServer() as other:
        other.route("/robots.txt", body="User-agent: *\nDisallow: /\n", content_type="text/plain")
        other.route("/img.jpg", body=b"never", content_type="image/jpeg")
        srv.route("/hop", status=302, headers={"Location": other.base_url + "/img.jpg"})
        with Fetcher(policy()) as f:
            drop = f.fetch_media(image(srv.base_url + "/hop"))
        assert drop.reason == "robots.txt disallows"
        assert other.base_url in drop.detail
        assert other.hits("/img.jpg") == []


def test_robots_can_be_switched_off(srv):
    srv.route("/robots.txt", body="User-agent: *\nDisallow: /\n", content_type="text/plain")
    with Fetcher(policy(respect_robots=False)) as f:
        assert isinstance(f.fetch_media(image(srv.base_url + "/img.jpg")), Fetched)
    assert srv.hits("/robots.txt") == []


def test_robots_txt_is_fetched_once_under_many_threads(srv):
    def slow_robots(_request):
        time.sleep(0.3)
        return Answer(body="User-agent: *\nDisallow: /nope\n", content_type="text/plain")

    srv.route("/robots.txt", handler=slow_robots)
    with Fetcher(policy(per_host_concurrency=None)) as f, ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _i: f.fetch_media(image(srv.base_url + "/img.jpg")), range(8)))
    assert all(isinstance(r, Fetched) for r in results)
    assert len(srv.hits("/robots.txt")) == 1


def test_crawl_delay_spaces_requests_to_the_host(srv):
    srv.route("/robots.txt", body="User-agent: deepwatch\nCrawl-delay: 0.3\n", content_type="text/plain")
    starts = _record_starts(srv, "/img.jpg")
    with Fetcher(policy()) as f, ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _i: f.fetch_media(image(srv.base_url + "/img.jpg")), range(4)))
    gaps = _gaps(starts)
    assert len(gaps) == 3 and min(gaps) > 0.25, gaps


def test_crawl_delay_is_capped(srv):
    srv.route("/robots.txt", body="User-agent: *\nCrawl-delay: 3600\n", content_type="text/plain")
    with Fetcher(policy(max_crawl_delay_s=0.2)) as f:
        started = time.monotonic()
        for _ in range(3):
            assert isinstance(f.fetch_media(image(srv.base_url + "/img.jpg")), Fetched)
        elapsed = time.monotonic() - started
    assert 0.35 < elapsed < 2


# -- per-host limits -------------------------------------------------------------------------


def _record_starts(srv: ReplayServer, path: str, hold_s: float = 0.0) -> list[float]:
    starts: list[float] = []

    def handler(_request):
        starts.append(time.monotonic())
        time.sleep(hold_s)
        return Answer(body=b"\xff\xd8\xff", content_type="image/jpeg")

    srv.route(path, handler=handler)
    return starts


def _gaps(starts: list[float]) -> list[float]:
    ordered = sorted(starts)
    return [b - a for a, b in zip(ordered, ordered[1:])]


def _max_in_flight(srv: ReplayServer, per_host_concurrency: int | None) -> int:
    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    def handler(_request):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.15)
        with lock:
            state["now"] -= 1
        return Answer(body=b"\xff\xd8\xff", content_type="image/jpeg")

    srv.route("/slow.jpg", handler=handler)
    with Fetcher(policy(per_host_concurrency=per_host_concurrency)) as f, ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _i: f.fetch_media(image(srv.base_url + "/slow.jpg")), range(12)))
    assert all(isinstance(r, Fetched) for r in results)
    return state["max"]


def test_per_host_concurrency_is_capped(srv):
    assert _max_in_flight(srv, 2) == 2
    assert _max_in_flight(srv, None) > 2  # the measurement can see more when the cap is off


def test_per_host_rate_spaces_request_starts(srv):
    starts = _record_starts(srv, "/img.jpg")
    with Fetcher(policy(per_host_rps=5)) as f, ThreadPoolExecutor(5) as pool:
        list(pool.map(lambda _i: f.fetch_media(image(srv.base_url + "/img.jpg")), range(5)))
    gaps = _gaps(starts)
    assert len(gaps) == 4 and min(gaps) > 0.17, gaps  # 1/5 s apart, less scheduling jitter


def test_rate_limit_wait_never_passes_the_deadline(srv):
    with Fetcher(policy(per_host_rps=0.25, total_timeout_s=1, respect_robots=False)) as f:
        assert isinstance(f.fetch_media(image(srv.base_url + "/img.jpg")), Fetched)
        started = time.monotonic()
        drop = f.fetch_media(image(srv.base_url + "/img.jpg"))  # next slot is 4 s away
        assert time.monotonic() - started < 0.2
    assert drop.reason == "timeout" and "politeness wait" in drop.detail


def test_hosts_are_limited_independently(srv):
    with ReplayServer() as other:
        other.route("/img.jpg", body=b"\xff\xd8\xff", content_type="image/jpeg")
        with Fetcher(policy(per_host_rps=1, respect_robots=False)) as f:
            started = time.monotonic()
            for base in (srv.base_url, other.base_url):
                assert isinstance(f.fetch_media(image(base + "/img.jpg")), Fetched)
            assert time.monotonic() - started < 0.5  # no shared 1 s spacing between two hosts


# -- conditional requests --------------------------------------------------------------------


def _etag_route(srv: ReplayServer, path: str, version: dict[str, str]) -> None:
    def handler(request):
        etag = f'"{version["v"]}"'
        if request.headers.get("if-none-match") == etag:
            return Answer(status=304, body=b"", headers={"ETag": etag})
        return Answer(json_body={"version": version["v"]}, headers={"ETag": etag})

    srv.route(path, handler=handler)


def test_etag_revalidation_returns_the_cached_body(srv):
    version = {"v": "1"}
    _etag_route(srv, "/feed", version)
    with Fetcher(policy()) as f:
        assert f.get_json(srv.base_url + "/feed", {"page": 1}) == {"version": "1"}
        assert f.get_json(srv.base_url + "/feed", {"page": 1}) == {"version": "1"}
        assert f.counters["not_modified"] == 1
        version["v"] = "2"
        assert f.get_json(srv.base_url + "/feed", {"page": 1}) == {"version": "2"}
        assert f.counters["not_modified"] == 1
    sent = [r.headers.get("if-none-match") for r in srv.hits("/feed")]
    assert sent == [None, '"1"', '"1"']


def test_last_modified_revalidation_for_documents(srv):
    stamp = "Wed, 21 Oct 2026 07:28:00 GMT"

    def handler(request):
        if request.headers.get("if-modified-since") == stamp:
            return Answer(status=304, body=b"")
        return Answer(body="<rss>items</rss>", content_type="application/rss+xml", headers={"Last-Modified": stamp})

    srv.route("/rss", handler=handler)
    with Fetcher(policy()) as f:
        first = f.get_document(srv.base_url + "/rss")
        second = f.get_document(srv.base_url + "/rss")
        assert f.counters["not_modified"] == 1
    assert first == second == Fetched(b"<rss>items</rss>", "application/rss+xml", srv.base_url + "/rss")


def test_conditional_cache_is_bounded(srv):
    version = {"v": "1"}
    for name in ("a", "b", "c"):
        _etag_route(srv, f"/{name}", version)
    with Fetcher(policy(conditional_cache_entries=2)) as f:
        for name in ("a", "b", "c", "a"):
            f.get_json(f"{srv.base_url}/{name}")
        assert f.counters["not_modified"] == 0  # "a" was evicted by "c" before it came back
        f.get_json(f"{srv.base_url}/a")
        assert f.counters["not_modified"] == 1


def test_media_fetches_are_not_conditional(srv):
    srv.route("/tagged.jpg", body=b"\xff\xd8\xff", content_type="image/jpeg", headers={"ETag": '"m"'})
    with Fetcher(policy()) as f:
        f.fetch_media(image(srv.base_url + "/tagged.jpg"))
        f.fetch_media(image(srv.base_url + "/tagged.jpg"))
    assert [r.headers.get("if-none-match") for r in srv.hits("/tagged.jpg")] == [None, None]


def test_304_with_nothing_cached_is_an_error(srv):
    srv.route("/odd", status=304, body=b"")
    with Fetcher(policy()) as f, pytest.raises(FetchError) as err:
        f.get_json(srv.base_url + "/odd")
    assert err.value.reason == "HTTP 304"


# -- retries, decoding, headers, counters ----------------------------------------------------


def test_5xx_is_retried_with_growing_jittered_backoff(srv):
    starts: list[float] = []

    def flaky(_request):
        starts.append(time.monotonic())
        if len(starts) < 3:
            return Answer(status=503, body=b"busy", content_type="text/plain")
        return Answer(json_body={"ok": True})

    srv.route("/flaky", handler=flaky)
    with Fetcher(policy(backoff_s=0.2, retries=2)) as f:
        assert f.get_json(srv.base_url + "/flaky") == {"ok": True}
        assert f.counters["retries"] == 2
    first, second = _gaps(starts)
    assert 0.09 < first < 0.4  # 0.2 s x jitter in [0.5, 1]
    assert 0.19 < second < 0.7  # doubled


def test_compressed_bodies_are_decoded(srv):
    srv.route("/gz", body=gzip.compress(b'{"enc": "gzip"}'), content_type="application/json",
              headers={"Content-Encoding": "gzip"})
    srv.route("/zz", body=zlib.compress(b'{"enc": "deflate"}'), content_type="application/json",
              headers={"Content-Encoding": "deflate"})
    srv.route("/br", body=b"\x0b\x02\x80{}\x03", content_type="application/json", headers={"Content-Encoding": "br"})
    srv.route("/bad", body=b"not gzip at all", content_type="application/json", headers={"Content-Encoding": "gzip"})
    with Fetcher(policy()) as f:
        assert f.get_json(srv.base_url + "/gz") == {"enc": "gzip"}
        assert f.get_json(srv.base_url + "/zz") == {"enc": "deflate"}
        for path, detail in (("/br", "'br' was not asked for"), ("/bad", "gzip")):
            with pytest.raises(FetchError) as err:
                f.get_json(srv.base_url + path)
            assert err.value.reason == "bad encoding" and detail in err.value.detail
    assert srv.hits("/gz")[0].headers["accept-encoding"] == "gzip, deflate"


def test_user_agent_names_deepwatch_and_the_contact_url(srv):
    contact = "https://example.org/election-watch"
    with Fetcher(policy(user_agent=default_user_agent(contact))) as f:
        f.get_json(srv.base_url + "/api")
    for request in srv.requests:  # robots.txt and the API call alike
        assert request.headers["user-agent"].startswith("deepwatch/")
        assert contact in request.headers["user-agent"]


def test_counters_count_requests_and_bytes(srv):
    srv.route("/robots.txt", body="User-agent: *\nDisallow:\n", content_type="text/plain")
    with Fetcher(policy()) as f:
        for _ in range(3):
            f.fetch_media(image(srv.base_url + "/img.jpg"))
        counters = dict(f.counters)
    robots_len = len("User-agent: *\nDisallow:\n")
    assert counters["requests"] == 4 and counters["robots_fetches"] == 1
    assert counters["bytes"] == 3 * len(b"\xff\xd8\xff fake jpeg") + robots_len


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("per_host_rps", -1, "per_host_rps must be None or a number >= 0"),
        ("per_host_concurrency", 1.5, "per_host_concurrency must be None or an integer >= 0"),
        ("respect_robots", "yes", "respect_robots must be true or false"),
        ("robots_ttl_s", 0, "robots_ttl_s must be > 0"),
        ("max_crawl_delay_s", -1, "max_crawl_delay_s must be >= 0"),
        ("conditional_cache_entries", -5, "conditional_cache_entries must be an integer >= 0"),
        ("max_connections", 0, "max_connections must be a positive integer"),
        ("total_timeout_s", float("nan"), "total_timeout_s must be > 0"),
    ],
)
def test_bad_politeness_settings_are_refused_by_name(field, value, message):
    with pytest.raises(ValueError, match=message):
        FetchPolicy(**{field: value})


def test_politeness_can_be_switched_off():
    p = FetchPolicy(per_host_rps=None, per_host_concurrency=None, respect_robots=False)
    assert (p.per_host_rps, p.per_host_concurrency, p.respect_robots) == (None, None, False)
    assert FetchPolicy(per_host_rps=0, per_host_concurrency=0).per_host_concurrency == 0


def test_caller_headers_go_to_the_first_origin_only(srv):
    with ReplayServer() as other:
        other.route("/landing", json_body={"where": "other"})
        srv.route("/same", status=302, headers={"Location": "/api"})
        srv.route("/away", status=302, headers={"Location": other.base_url + "/landing"})
        token = {"Authorization": "Bearer secret"}
        with Fetcher(policy()) as f:
            assert f.get_json(srv.base_url + "/same", headers=token) == {"ok": True}
            assert f.get_json(srv.base_url + "/away", headers=token) == {"where": "other"}
            f.get_document(srv.base_url + "/api", headers=token)
            with pytest.raises(TypeError, match="headers must be a dict of str to str"):
                f.get_json(srv.base_url + "/api", headers={"X-Count": 3})
        assert [r.headers.get("authorization") for r in srv.hits("/same") + srv.hits("/away")] == ["Bearer secret"] * 2
        assert [r.headers.get("authorization") for r in srv.hits("/api")] == ["Bearer secret"] * 2
        assert "authorization" not in other.hits("/landing")[0].headers

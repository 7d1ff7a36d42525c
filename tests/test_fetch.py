"""The shared fetcher against local servers only: every case is bounded in time."""
from __future__ import annotations

import io
import ipaddress
import socket
import time

import pytest
from PIL import Image

from agents.base import Drop, MediaRef
from agents.fetch import Fetched, FetchError, Fetcher, FetchPolicy, address_refusal
from tests.fakeplatform import FakePlatform

pytestmark = pytest.mark.timeout(60)

LOOPBACK = ("127.0.0.0/8",)


@pytest.fixture(scope="module")
def platform():
    with FakePlatform() as fp:
        yield fp


@pytest.fixture
def fetcher():
    with Fetcher(FetchPolicy(allow_networks=LOOPBACK, timeout_s=2, total_timeout_s=5, backoff_s=0.05)) as f:
        yield f


def image(url: str) -> MediaRef:
    return MediaRef(url=url, kind="image")


def test_image_fetch(platform, fetcher):
    result = fetcher.fetch_media(image(platform.base_url + "/media/rally.png"))
    assert isinstance(result, Fetched)
    assert result.declared_mime == "image/png"
    assert result.final_url == platform.base_url + "/media/rally.png"
    assert result.data == platform.media["rally.png"][0]
    assert Image.open(io.BytesIO(result.data)).size == (320, 240)


def test_declared_type_is_reported_not_trusted(platform, fetcher):
    # An HTML page that claims to be a JPEG comes back as declared; sniffing is a later stage's job.
    data, mime, _ = fetcher.fetch_media(image(platform.base_url + "/media/broken.jpg"))
    assert mime == "image/jpeg"
    assert data.startswith(b"<!doctype html>")


def test_404_is_a_drop(platform, fetcher):
    drop = fetcher.fetch_media(image(platform.base_url + "/_test/status/404"))
    assert isinstance(drop, Drop)
    assert (drop.stage, drop.reason) == ("fetch", "HTTP 404")
    assert drop.subject == platform.base_url + "/_test/status/404"


def test_redirect_is_followed_and_final_url_reported(platform, fetcher):
    result = fetcher.fetch_media(image(platform.base_url + "/_test/redirect?to=/media/crowd.jpg"))
    assert result.final_url == platform.base_url + "/media/crowd.jpg"
    assert result.data == platform.media["crowd.jpg"][0]


def test_redirect_loop(platform, fetcher):
    before = platform.hits["/_test/redirect-loop"]
    drop = fetcher.fetch_media(image(platform.base_url + "/_test/redirect-loop"))
    assert drop.reason == "too many redirects"
    assert platform.hits["/_test/redirect-loop"] - before == fetcher.policy.max_redirects + 1


def test_redirect_to_metadata_is_blocked_without_connecting(platform):
    # Even with the whole link-local range allowed, the metadata address itself stays refused.
    policy = FetchPolicy(allow_networks=LOOPBACK + ("169.254.0.0/16",), timeout_s=5, retries=0)
    target = "http://169.254.169.254/latest/meta-data/"
    started = time.monotonic()
    with Fetcher(policy) as f:
        drop = f.fetch_media(image(f"{platform.base_url}/_test/redirect?to={target}"))
    assert drop.reason == "blocked address"
    assert "169.254.169.254" in drop.detail and "cloud metadata" in drop.detail
    assert time.monotonic() - started < 1  # refused up front, not a connect timeout


def test_loopback_refused_unless_allowed(platform):
    url = platform.base_url + "/media/debate.jpg"
    with Fetcher(FetchPolicy(retries=0)) as strict:
        drop = strict.fetch_media(image(url))
        assert drop.reason == "blocked address" and "loopback" in drop.detail
        # Names that resolve to loopback are refused too, not only literal addresses.
        drop = strict.fetch_media(image(url.replace("127.0.0.1", "localhost")))
        assert drop.reason == "blocked address"
        with pytest.raises(FetchError) as err:
            strict.get_json(platform.base_url + "/api/v1/search?q=x")
        assert err.value.reason == "blocked address"
    with Fetcher(FetchPolicy(allow_networks=LOOPBACK)) as allowed:
        assert allowed.fetch_media(image(url)).data == platform.media["debate.jpg"][0]


def test_non_http_schemes_refused(fetcher):
    for url in ("file:///etc/passwd", "ftp://example.org/x.jpg", "gopher://127.0.0.1:70/"):
        assert fetcher.fetch_media(image(url)).reason == "unsupported scheme"


@pytest.mark.parametrize(
    "address, refusal",
    [
        ("10.1.2.3", "private"), ("192.168.0.1", "private"), ("127.0.0.1", "loopback"), ("::1", "loopback"),
        ("169.254.1.1", "link-local"), ("224.0.0.1", "multicast"), ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"), ("fd00:ec2::254", "cloud metadata"), ("::ffff:127.0.0.1", "loopback"),
        ("100.64.0.1", "not globally routable"), ("93.184.215.14", None), ("2606:4700::1111", None),
    ],
)
def test_address_refusal(address, refusal):
    assert address_refusal(ipaddress.ip_address(address)) == refusal


def test_huge_content_length_is_cut_before_reading(platform):
    with Fetcher(FetchPolicy(allow_networks=LOOPBACK, max_bytes=1_000_000)) as f:
        drop = f.fetch_media(MediaRef(platform.base_url + "/_test/huge", "video"))
    assert drop.reason == "over size cap"
    assert "Content-Length" in drop.detail


def test_endless_body_is_cut_at_the_cap(platform):
    started = time.monotonic()
    with Fetcher(FetchPolicy(allow_networks=LOOPBACK, max_bytes=1_000_000, timeout_s=5)) as f:
        drop = f.fetch_media(MediaRef(platform.base_url + "/_test/endless", "video"))
    assert drop.reason == "over size cap"
    assert time.monotonic() - started < 5


def test_slow_drip_times_out_within_the_total_timeout(platform):
    # Each byte arrives well inside the read timeout; only the total deadline catches this.
    policy = FetchPolicy(allow_networks=LOOPBACK, timeout_s=1, total_timeout_s=1.5)
    started = time.monotonic()
    with Fetcher(policy) as f:
        drop = f.fetch_media(image(platform.base_url + "/_test/drip"))
    elapsed = time.monotonic() - started
    assert drop.reason == "timeout"
    assert 1.4 < elapsed < 3


def test_stalled_body_times_out_on_read(platform):
    started = time.monotonic()
    with Fetcher(FetchPolicy(allow_networks=LOOPBACK, timeout_s=0.5)) as f:
        drop = f.fetch_media(image(platform.base_url + "/_test/stall"))
    assert drop.reason == "timeout"
    assert time.monotonic() - started < 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


def test_connection_refused(fetcher):
    port = free_port()
    drop = fetcher.fetch_media(image(f"http://127.0.0.1:{port}/x.jpg"))
    assert drop.reason == "connection failed"
    assert f"127.0.0.1:{port}" in drop.detail and "refused" in drop.detail.lower()
    with pytest.raises(FetchError, match="connection failed") as err:
        fetcher.get_json(f"http://127.0.0.1:{port}/api")
    assert err.value.reason == "connection failed"


def test_503_with_retry_after_is_retried(platform, fetcher):
    path = "/_test/flaky?key=retry-after"
    started = time.monotonic()
    result = fetcher.fetch_media(image(platform.base_url + path))
    elapsed = time.monotonic() - started
    assert isinstance(result, Fetched) and result.declared_mime == "image/png"
    assert platform.hits[path] == 2
    assert 0.9 < elapsed < 4  # waited the 1 s the server asked for, not the 0.05 s backoff


def test_503_without_retries_is_a_drop(platform):
    with Fetcher(FetchPolicy(allow_networks=LOOPBACK, retries=0)) as f:
        drop = f.fetch_media(image(platform.base_url + "/_test/flaky?key=no-retries"))
    assert drop.reason == "HTTP 503"


def test_empty_body_is_a_drop(platform, fetcher):
    assert fetcher.fetch_media(image(platform.base_url + "/_test/empty")).reason == "empty body"


def test_get_json(platform, fetcher):
    answer = fetcher.get_json(platform.base_url + "/api/v1/search", {"q": "선거", "limit": 2})
    assert [p["id"] for p in answer["posts"]] == ["p0008", "p0007"]
    assert answer["next_cursor"]


def test_get_json_errors(platform, fetcher):
    with pytest.raises(FetchError) as err:
        fetcher.get_json(platform.base_url + "/_test/not-json")
    assert err.value.reason == "invalid JSON"
    with pytest.raises(FetchError) as err:
        fetcher.get_json(platform.base_url + "/api/v1/search", {"q": "x", "cursor": "garbled"})
    assert err.value.reason == "HTTP 400"
    assert "bad cursor" in err.value.detail  # the server's own error body is kept for people


def test_user_agent_names_the_project():
    ua = FetchPolicy().user_agent
    assert "deepwatch" in ua and "https://" in ua


def test_bad_policy_is_refused_clearly():
    with pytest.raises(ValueError, match="allow_networks entry 'loopback'"):
        FetchPolicy(allow_networks=("loopback",))
    with pytest.raises(ValueError, match="tuple of CIDR"):
        FetchPolicy(allow_networks="127.0.0.0/8")  # a bare string would be read char by char
    with pytest.raises(ValueError, match="max_bytes"):
        FetchPolicy(max_bytes=0)
    assert FetchPolicy(allow_networks=["10.0.0.0/8"]).allow_networks == ("10.0.0.0/8",)

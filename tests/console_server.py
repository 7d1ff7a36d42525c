"""The review console running for real, for browser tests: `console.app.create_app` served by
uvicorn in a background thread on 127.0.0.1:<free port>, over a fresh SQLite database holding
real evidence (posts, media bytes in the blob store, detections, custody events, screenshots)
written through the same Store methods a campaign uses, and real accounts made with
`console.auth.create_user`.

`seed_console_data(store, blobs)` fills the database; `ConsoleServer(db_url, blobs_root)` is a
context manager that serves it. `running_console(folder)` does both.
"""
from __future__ import annotations

import io
import os
import shutil
import socket
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from fractions import Fraction
from pathlib import Path
from typing import Iterator

from PIL import Image, ImageDraw

from tests.evidence_factory import POSTED, make_evidence

# One account per role; the policy wants 12+ characters.
PASSWORDS = {
    "viewer": "viewer-password-0001",
    "investigator": "investigator-password-0002",
    "admin": "admin-password-0003",
}
USERS = {"viewer": "vera.viewer", "investigator": "kim.investigator", "admin": "ada.admin"}

CAMPAIGN = "kr-election-2026"
CAMPAIGN_SPEC = f"name: {CAMPAIGN}\nwindow:\n  timezone: Asia/Seoul\n"
KOREAN_KEYWORD = "딥페이크"  # "deepfake": in two Korean posts with different verdicts
XSS_TEXT = "<script>alert('xss')</script><img src=x onerror=alert(2)> 투표 전에 보세요"
# The video detector's suspect stretches, in the shape detectors/pipeline.py writes
# (`details["segments"] = [[start_s, end_s], ...]`, see suspect_segments()).
VIDEO_SEGMENTS = [[0.5, 1.5], [2.0, 2.5]]
VIDEO_SECONDS = 3.0


@dataclass
class SeededData:
    """Evidence ids by role in the tests, plus the campaign they belong to."""

    campaign: str
    korean_fake: int  # demo, Korean text with the keyword, likely_fake
    korean_review: int  # demo, Korean text with the keyword, needs_review
    xss: int  # demo, post text carrying <script> and an onerror handler
    english: int  # mastodon, confirmed_ai
    video: int  # demo, an MP4 with suspect segments
    video_sha256: str = ""
    ids: dict[str, int] = field(default_factory=dict)


def mp4_clip(seconds: float = VIDEO_SECONDS, fps: int = 10, size: tuple[int, int] = (160, 120)) -> bytes:
    """A real H.264 MP4 (Chromium plays H.264; MPEG-4 Part 2 it does not), moov atom first so the
    browser can start playing and seeking before it has read the whole file."""
    import av
    import numpy as np

    w, h = size
    # faststart rewrites the file after encoding, which PyAV can only do on a real file.
    folder = tempfile.mkdtemp(prefix="dw-clip-")
    path = os.path.join(folder, "clip.mp4")
    with av.open(path, "w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.time_base = Fraction(1, fps)
        for i in range(int(seconds * fps)):
            pixels = np.zeros((h, w, 3), dtype=np.uint8)
            pixels[..., 0] = (i * 8) % 256  # a slow colour ramp and a moving bar: frames differ
            pixels[:, (i * 5) % w: (i * 5) % w + 12, 1] = 255
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = Path(path).read_bytes()
    shutil.rmtree(folder, ignore_errors=True)
    return data


def page_screenshot_png(title: str, seed: int) -> bytes:
    """A PNG standing in for the capture stage's full-page screenshot of the post."""
    img = Image.new("RGB", (480, 320), (245, 245, 250))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, 480, 40), fill=(30, 60 + seed * 20 % 180, 120))
    draw.text((10, 12), f"captured post {seed}", fill=(255, 255, 255))
    draw.text((10, 60), title.encode("ascii", "replace").decode()[:60], fill=(20, 20, 20))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _finish_record(store, blobs, evidence_id: int, seed: int, *, verdict: str | None = None) -> None:
    """What the evidence stage adds after flagging: custody event, screenshot, capture facts."""
    from evidence.custody import append_event
    from storage import models as m

    append_event(store, evidence_id, "flagged", f"campaign:{CAMPAIGN}", {"seed": seed})
    shot = blobs.put(page_screenshot_png(f"post {seed}", seed))
    store.update_evidence_capture(evidence_id, screenshot_sha256=shot, html_sha256=None,
                                  captured_at=POSTED + timedelta(hours=1))
    store.update_evidence(evidence_id, capture_tool="deepwatch-test (Chromium)", capture_operator=CAMPAIGN,
                          capture_ip="127.0.0.1")
    if verdict is not None:  # the factory flags everything likely_fake; some tests need other bands
        store.update_evidence(evidence_id, verdict=verdict)
        with store.session() as s:
            ev = s.get(m.Evidence, evidence_id)
            media = s.get(m.Media, ev.media_sha256)
            media.verdict = verdict
            s.add(media)
            s.commit()


def _video_evidence(store, blobs, seed: int, text: str) -> tuple[int, str]:
    """One flagged video in one post, with the video detector's frame scores and segments."""
    from agents.base import MediaRef, Post
    from detectors.base import Detection

    data = mp4_clip()
    sha = blobs.put(data)
    cid = store.upsert_campaign(CAMPAIGN, CAMPAIGN_SPEC)
    url = f"https://demo.example/m/{seed}.mp4"
    posted = POSTED + timedelta(days=2)
    post = Post(platform="demo", post_id=f"p{seed}", url=f"https://demo.example/p/{seed}", account=f"acct{seed}",
                text=text, created_at=posted, media=(MediaRef(url, "video"),), source="src")
    post_pk, _ = store.upsert_post(cid, post)
    store.upsert_media(sha256=sha, kind="video", mime="video/mp4", size=len(data), width=160, height=120,
                       duration_s=VIDEO_SECONDS)
    store.add_sighting(media_sha256=sha, post_pk=post_pk, campaign_id=cid, media_url=url, position=0)
    frames = [{"t_s": t / 2, "score": s} for t, s in enumerate([0.2, 0.95, 0.97, 0.91, 0.93, 0.3])]
    detection = Detection(
        detector="hf-classifier", version="1", outcome="fake", score=0.94, threshold=0.5,
        model_id="demo-detector", weights_digest="abc123",
        reasons=["classifier demo-detector scored 0.94 >= 0.50 (mean of the top 2 of 6 sampled frames)",
                 "frames scoring >= 0.50 at 0.5-1.5 s, 2.0-2.5 s"],
        details={"frames": frames, "segments": VIDEO_SEGMENTS, "aggregate": "mean of top third of frame scores"},
    )
    store.save_analysis(sha, [detection], "likely_fake", 0.94, ["classifier scored 0.94"])
    ev_id, _ = store.upsert_evidence(
        campaign_id=cid, media_sha256=sha, post_pk=post_pk, platform="demo", post_id=post.post_id,
        post_url=post.url, account=post.account, media_url=url, verdict="likely_fake", score=0.94,
        reasons=["classifier scored 0.94"],
    )
    return ev_id, sha


def seed_console_data(store, blobs) -> SeededData:
    """Five evidence records in one campaign, each as the pipeline would have left it."""
    from console.auth import create_user

    day = timedelta(days=1)
    korean_fake = make_evidence(store, blobs, seed=1, platform="demo", campaign=CAMPAIGN, score=0.93,
                                text=f"대통령 후보 {KOREAN_KEYWORD} 영상이 퍼지고 있습니다", posted=POSTED)
    korean_review = make_evidence(store, blobs, seed=2, platform="demo", campaign=CAMPAIGN, score=0.62,
                                  text=f"후보 {KOREAN_KEYWORD} 의혹 사진, 확인 필요", posted=POSTED + day)
    xss = make_evidence(store, blobs, seed=3, platform="demo", campaign=CAMPAIGN, score=0.88, text=XSS_TEXT,
                        posted=POSTED + day)
    english = make_evidence(store, blobs, seed=4, platform="mastodon", campaign=CAMPAIGN, score=0.99,
                            text="Candidate rally photo, edited with an image generator", posted=POSTED + 2 * day)
    _finish_record(store, blobs, korean_fake, 1)
    _finish_record(store, blobs, korean_review, 2, verdict="needs_review")
    _finish_record(store, blobs, xss, 3)
    _finish_record(store, blobs, english, 4, verdict="confirmed_ai")
    video, video_sha = _video_evidence(store, blobs, 5, f"토론회 {KOREAN_KEYWORD} 영상 조작본")
    _finish_record(store, blobs, video, 5)
    # The factory saves a bare spec for the campaign; put back the one naming the election's zone.
    cid = store.upsert_campaign(CAMPAIGN, CAMPAIGN_SPEC)

    # The run report the dashboard's stage counts come from (shape of CampaignRun._report).
    store.set_campaign_status(cid, "finished", {
        "campaign": CAMPAIGN, "started_at": POSTED.isoformat(), "seconds": 42.0,
        "counts": {"posts": 40, "posts_new": 40, "media_refs": 44, "media_fetched": 42, "unique": 30,
                   "duplicates_exact": 8, "duplicates_near": 4, "analysed": 30, "provenance_checked": 34,
                   "bank_matches": 1, "banked": 2, "flagged": 4, "needs_review": 1, "evidence_written": 5,
                   "captures": 5, "sealed": 0, "dropped": 2},
        "drops": {"fetch": {"http 404": 2}},
        "verdicts": {"likely_fake": 3, "confirmed_ai": 1, "needs_review": 1, "no_signal": 25},
    })
    for role, password in PASSWORDS.items():
        create_user(store, USERS[role], password, role=role)
    ids = {"korean_fake": korean_fake, "korean_review": korean_review, "xss": xss, "english": english,
           "video": video}
    return SeededData(CAMPAIGN, korean_fake, korean_review, xss, english, video, video_sha, ids)


def _listening_socket() -> socket.socket:
    """Bound before uvicorn starts, so no other process can take the port in between."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


class ConsoleServer:
    """`console.app.create_app(db_url, blobs_root, **app_options)` under uvicorn in a daemon thread."""

    def __init__(self, db_url: str, blobs_root: str | Path, *, start_timeout_s: float = 30, **app_options):
        self.db_url = db_url
        self.blobs_root = str(blobs_root)
        self.app_options = app_options
        self.start_timeout_s = start_timeout_s
        self.base_url = ""
        self._server = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    def start(self) -> str:
        import uvicorn

        from console.app import create_app

        app = create_app(self.db_url, self.blobs_root, **self.app_options)
        self._sock = _listening_socket()
        port = self._sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name="console-uvicorn", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the console server thread exited during start-up (see the log above)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the console server did not start within {self.start_timeout_s} s")
            time.sleep(0.05)
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> "ConsoleServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@contextmanager
def running_console(folder: Path, db_url: str | None = None) -> Iterator[tuple[ConsoleServer, SeededData]]:
    """A fresh database (a SQLite file under `folder` unless `db_url` names an empty one) and a blob
    store under `folder`, seeded, served."""
    from storage.blobs import BlobStore
    from storage.db import Store

    db_url = db_url or f"sqlite:///{folder / 'console.db'}"
    blobs_root = folder / "blobs"
    store = Store(db_url)
    try:
        seeded = seed_console_data(store, BlobStore(blobs_root))
    finally:
        store.close()
    # The signing key and the packets stay in the test's folder, not in the repository's var/.
    with ConsoleServer(db_url, blobs_root, key_dir=str(folder / "keys"),
                       packets_root=str(folder / "packets")) as server:
        yield server, seeded

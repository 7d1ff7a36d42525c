"""Real evidence rows for tests: a post, its media (bytes in the blob store), a detection, a
sighting and the evidence record, written through the same Store methods a campaign uses."""
from __future__ import annotations

import io
from datetime import datetime, timezone

from PIL import Image, ImageDraw

from agents.base import MediaRef, Post
from detectors.base import Detection

POSTED = datetime(2026, 5, 20, 9, 30, tzinfo=timezone.utc)


def jpeg(seed: int = 1) -> bytes:
    img = Image.new("RGB", (320, 240), (20 * seed % 255, 90, 160))
    draw = ImageDraw.Draw(img)
    for i in range(12):
        draw.ellipse((10 + 23 * i, 20 + 11 * ((i * seed) % 7), 60 + 23 * i, 90 + 9 * i), fill=(255 - 17 * i, 40 * (i % 5), 120))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_evidence(store, blobs, *, seed: int = 1, platform: str = "demo", text: str = "후보 합성 영상 <script>alert(1)</script>",
                  campaign: str = "c", score: float = 0.93, posted: datetime = POSTED) -> int:
    """One flagged image in one post; returns the evidence id."""
    from detectors.pdq import pdq_from_bytes

    data = jpeg(seed)
    sha = blobs.put(data)
    pdq, quality = pdq_from_bytes(data)
    cid = store.upsert_campaign(campaign, f"name: {campaign}")
    url = f"https://{platform}.example/m/{seed}.jpg"
    post = Post(platform=platform, post_id=f"p{seed}", url=f"https://{platform}.example/p/{seed}", account=f"acct{seed}",
                text=text, created_at=posted, media=(MediaRef(url, "image"),), source="src")
    post_pk, _ = store.upsert_post(cid, post)
    store.upsert_media(sha256=sha, kind="image", mime="image/jpeg", size=len(data), width=320, height=240,
                       phash="8f373714acfcf4d0", pdq=pdq, pdq_quality=quality)
    store.add_sighting(media_sha256=sha, post_pk=post_pk, campaign_id=cid, media_url=url, position=0)
    detection = Detection(detector="classifier", version="1", outcome="fake", score=score, threshold=0.5,
                          reasons=[f"classifier scored {score} >= 0.5"], model_id="demo-detector", weights_digest="abc123")
    store.save_analysis(sha, [detection], "likely_fake", score, [f"classifier scored {score}"])
    ev_id, _ = store.upsert_evidence(
        campaign_id=cid, media_sha256=sha, post_pk=post_pk, platform=platform, post_id=post.post_id,
        post_url=post.url, account=post.account, media_url=url, phash="8f373714acfcf4d0",
        verdict="likely_fake", score=score, reasons=[f"classifier scored {score}"],
    )
    return ev_id

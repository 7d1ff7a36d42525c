"""Near-duplicate matching of new media against everything already seen.

Exact duplicates need no code here: media rows are keyed by sha256. Near duplicates (a
re-upload resized, re-encoded or cropped) are found through the multi-index hash index
(`storage.hashindex`): images by PDQ (256 bits, quality-gated) and by pHash (64 bits), videos by
vPDQ (per-frame PDQ, half a second apart) with a both-ways share rule, falling back to
sampled-frame pHashes for videos without usable vPDQ frames. A match means the item is not classified
again: it joins the cluster of the item it copies (see `storage.queries` for cluster verdicts).

Match rule for images, in order:
  1. PDQ distance <= 31 with both qualities >= 50 (ThreatExchange's own rule; unrelated images
     sit ~128 bits apart, so this is precise at any scale);
  2. otherwise pHash distance <= `image_max_distance`, confirmed by a PDQ distance <= 90 when both
     items have one. pHash survives crops and captions better than PDQ (bench/dedup.py) but at
     64 bits random near-collisions become common in millions of items; requiring PDQ to be far
     closer than chance (~4.7 standard deviations) keeps those from inheriting a fake verdict.
Both rules also run on the content region of an image (detectors.regions: a screenshot's
chrome and a caption band cut away), indexed beside the whole frame, so a screenshot of a known
picture matches it region to region;
  3. a query with a band whose whole-frame pHash is within 20 of an indexed image is verified
     by the PDQ of the same relative region of both (a band painted over the picture hides part
     of it, so no whole-image hash can match). This needs the pixels of the candidate: it runs
     only when the index was given an `image_loader` and the query its image.

The index serves one process; `orchestrator.wiring.index_actor` serves it to many Ray workers
from an actor (every method's arguments and results are plain values).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from detectors.hashing import hamming
from detectors.regions import RegionHashes
from detectors.signals import SIGNALS
from storage.hashindex import BinaryHashIndex

PDQ_MATCH = SIGNALS["pdq"].default_threshold
PDQ_QUALITY_MIN = SIGNALS["pdq"].quality_cutoff or 0
PDQ_CONFIRM = 90
VPDQ_SHARE = 0.5
VIDEO_PROBES = 600  # query frames looked up in the video frame index (spread over the query)
REGION_CANDIDATE_PHASH = 20  # rule 3: how far (pHash bits) a candidate for region verification may be
REGION_CANDIDATES = 8  # rule 3: verify at most this many, nearest first (each costs a decode)


@dataclass(frozen=True)
class Match:
    sha256: str
    distance: float  # bits for images; for videos, 1 - the smaller share of matching frames
    signal: str = "phash"
    # Videos matched by vPDQ: where they line up (detectors.video_align.Alignment.as_dict()).
    where: dict | None = None


class PerceptualIndex:
    def __init__(self, image_max_distance: int = 10, video_frame_distance: int = 10,
                 image_loader: Callable[[str], Any] | None = None):
        self.image_max_distance = image_max_distance
        self.video_frame_distance = video_frame_distance
        self.image_loader = image_loader  # sha256 -> PIL image, for rule 3
        # Per image, in arrays rather than Python strings (a campaign's driver holds one index
        # for the whole run, so its cost per item is what grows): the item's name, and its usable
        # PDQ hashes (whole frame, region) for confirming pHash hits.
        self._sha = _Digests()
        self._pdq = _PdqSlots(slots=2)
        self._phash_index = BinaryHashIndex(bits=64)
        self._pdq_index = BinaryHashIndex(bits=256)
        # Per video: (sha256, frame pHashes, ((times, uint64 codes) of its usable plain vPDQ
        # frames, the same of its bar-cropped ones)).
        self._videos: list[tuple[str, list[str], tuple]] = []
        # Two frames a second of every known video, so a query is aligned only against videos
        # that share a close frame with it (a full alignment costs ~N x M frame distances).
        self._video_frames = BinaryHashIndex(bits=256)

    def __len__(self) -> int:
        return len(self._sha) + len(self._videos)

    def nbytes(self) -> int:
        """Bytes held for images (hash tables, names, PDQ slots) and videos' frame arrays and index."""
        videos = sum(t.nbytes + c.nbytes for _s, _f, coded in self._videos for t, c in coded) + self._video_frames.nbytes()
        return self._phash_index.nbytes() + self._pdq_index.nbytes() + self._sha.nbytes() + self._pdq.nbytes() + videos

    def size(self) -> int:
        """len(), as a method a Ray actor handle can call."""
        return len(self)

    def add_image(self, sha256: str, phash_hex: str | None, pdq_hex: str | None = None, pdq_quality: int | None = None,
                  region: RegionHashes | None = None) -> None:
        ident = len(self._sha)
        self._sha.append(sha256)
        usable = []
        for ph, pdq, quality in _views(phash_hex, pdq_hex, pdq_quality, region):
            if ph:
                self._phash_index.add_one(ident, ph)
            if pdq and (quality or 0) >= PDQ_QUALITY_MIN:
                self._pdq_index.add_one(ident, pdq)  # parses the hex: a bad hash fails here
                usable.append(pdq)
        self._pdq.append(usable)

    def add_video(self, sha256: str, frame_hashes: list[str], vpdq: list | None = None) -> None:
        from detectors.video_align import variant_codes

        if frame_hashes or vpdq:
            frames = _frames(vpdq)
            ident = len(self._videos)
            self._videos.append((sha256, list(frame_hashes), variant_codes(frames, PDQ_QUALITY_MIN)))
            for cropped in (False, True):  # plain hashes, and those of the picture inside bars
                good = [f for f in frames if f.quality >= PDQ_QUALITY_MIN and f.cropped == cropped]
                sampled = [f.hash_hex for i, f in enumerate(good) if i == 0 or int(f.t_s * 2) != int(good[i - 1].t_s * 2)]
                if sampled:
                    self._video_frames.add([ident] * len(sampled), sampled)

    def match_image(self, phash_hex: str | None, pdq_hex: str | None = None, pdq_quality: int | None = None,
                    region: RegionHashes | None = None, image: Any = None) -> Match | None:
        """The indexed image this one copies, by rules 1-3 (module docstring), or None.

        `region`: the query's content region (detectors.regions.region_hashes); `image`: its
        pixels (a PIL image, or a callable returning one, called only if rule 3 runs)."""
        views = _views(phash_hex, pdq_hex, pdq_quality, region)
        usable_pdq = [pdq for _, pdq, q in views if pdq and (q or 0) >= PDQ_QUALITY_MIN]
        if usable_pdq and len(self._pdq_index):
            hits = [hit for pdq in usable_pdq for hit in self._pdq_index.search(pdq, PDQ_MATCH)]
            if hits:
                ident, dist = min(hits, key=lambda hit: hit[1])
                return Match(self._sha[ident], float(dist), "pdq")
        if not len(self._phash_index):
            return None
        for ph, _, _ in views:
            if not ph:
                continue
            for ident, dist in self._phash_index.search(ph, self.image_max_distance):
                known = self._pdq[ident]
                if usable_pdq and known and min(hamming(a, b) for a in usable_pdq for b in known) > PDQ_CONFIRM:
                    continue  # a pHash near-collision between different pictures
                return Match(self._sha[ident], float(dist), "phash")
        if region is not None and image is not None and self.image_loader is not None and phash_hex:
            return self._verify_region(phash_hex, region, image)
        return None

    def _verify_region(self, phash_hex: str, region: RegionHashes, image: Any) -> Match | None:
        from detectors.regions import region_distance

        candidates = sorted(self._phash_index.search(phash_hex, REGION_CANDIDATE_PHASH), key=lambda hit: hit[1])
        if not candidates:
            return None
        if callable(image):
            image = image()
            if image is None:
                return None
        seen: set[int] = set()
        for ident, _ in candidates:
            if ident in seen or len(seen) >= REGION_CANDIDATES:
                continue
            seen.add(ident)
            known = self.image_loader(self._sha[ident])
            if known is None:
                continue
            dist = region_distance(image, region.box, known)
            if dist <= PDQ_MATCH:
                return Match(self._sha[ident], float(dist), "pdq-region")
        return None

    def match_video(self, frame_hashes: list[str], vpdq: list | None = None) -> Match | None:
        """vPDQ (ThreatExchange's rule: frames within 31 bits, quality >= 50, half of each
        video's frames found in the other) when both videos have usable vPDQ frames, with the
        aligned time ranges in `Match.where`; the sampled frame pHashes with the same share
        rule otherwise."""
        from detectors.hashing import video_match
        from detectors.video_align import align_variants, variant_codes

        frames = _frames(vpdq)
        good = [f for f in frames if f.quality >= PDQ_QUALITY_MIN]
        query = variant_codes(frames, PDQ_QUALITY_MIN)
        usable = len(query[0][1]) or len(query[1][1])
        candidates: set[int] = set()
        if good:
            step = max(1, len(good) // VIDEO_PROBES)
            for hits in self._video_frames.search_many([f.hash_hex for f in good[::step]], PDQ_MATCH):
                candidates.update(i for i, _d in hits)
        best: Match | None = None
        for ident, (sha, known_frames, known) in enumerate(self._videos):
            where = None
            if usable and (len(known[0][1]) or len(known[1][1])):
                if ident not in candidates:
                    continue  # no frame within 31 bits of the query's: cannot share half its frames
                found = align_variants(query, known)
                share, matched, signal = min(found.share_a, found.share_b), found.is_match, "vpdq"
                where = found.as_dict()
            elif frame_hashes and known_frames:
                matched, share = video_match(frame_hashes, known_frames, max_distance=self.video_frame_distance)
                signal = "video-frames"
            else:
                continue
            if matched and (best is None or 1 - share < best.distance):
                best = Match(sha, round(1 - share, 4), signal, where)
        return best


def _views(phash_hex: str | None, pdq_hex: str | None, pdq_quality: int | None,
           region: RegionHashes | None) -> list[tuple[str | None, str | None, int | None]]:
    views = [(phash_hex, pdq_hex, pdq_quality)]
    if region is not None:
        views.append((region.phash, region.pdq, region.pdq_quality))
    return views


def _frames(vpdq: list | None) -> list:
    from detectors.vpdq import frames_from_rows

    return frames_from_rows(vpdq)


class _Digests:
    """An append-only list of item names: a sha256 hex digest takes 32 bytes of one bytearray
    (instead of a ~113-byte str); any other name is kept as given."""

    def __init__(self) -> None:
        self._raw = bytearray()
        self._other: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self._raw) // 32

    def append(self, name: str) -> None:
        ident = len(self)
        digest = None
        if len(name) == 64 and name == name.lower():
            try:
                digest = bytes.fromhex(name)
            except ValueError:
                pass
        if digest is None:
            self._other[ident] = name
            digest = bytes(32)
        self._raw += digest

    def nbytes(self) -> int:
        return len(self._raw)  # plus the rare names that are not digests

    def __getitem__(self, ident: int) -> str:
        other = self._other.get(ident)
        return other if other is not None else self._raw[32 * ident : 32 * ident + 32].hex()


class _PdqSlots:
    """Up to `slots` 256-bit hashes per item in one bytearray, with a count byte per item."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._raw = bytearray()
        self._count = bytearray()

    def append(self, hashes: list[str]) -> None:
        if len(hashes) > self.slots:
            raise ValueError(f"at most {self.slots} PDQ hashes per item, got {len(hashes)}")
        self._count.append(len(hashes))
        self._raw += b"".join(bytes.fromhex(h) for h in hashes).ljust(32 * self.slots, b"\0")

    def nbytes(self) -> int:
        return len(self._raw) + len(self._count)

    def __getitem__(self, ident: int) -> list[str]:
        base = 32 * self.slots * ident
        return [self._raw[base + 32 * k : base + 32 * k + 32].hex() for k in range(self._count[ident])]

"""What a takedown notice may claim about an item, and in which words.

- Corroboration must be independent of the item: a known-fakes bank entry made from this very
  file (its own verdict or its own review put it there) proves nothing about it. Other copies of
  the file seen in other posts, and a bank reference the item is an (altered) copy of, do.
- Detector reasons are English sentences written by the detectors; a Korean notice gets them in
  Korean (known sentence shapes are translated; anything else is left to notice.json).
- Hashtags the post text already shows are not printed a second time.
- The screenshot is cropped to the page's content (the post on a permalink page) so it stays
  legible in print; the full-resolution file is attached beside it.
- Videos get stills: key frames (evenly spread and at scene changes) and frames inside the
  suspect segments the detector named.
"""
from __future__ import annotations

import io
import re
from typing import Any

from sqlmodel import select

from storage import models as m
from storage.bank import BankEntry
from storage.db import Store

# -- corroboration ---------------------------------------------------------------------------


def corroboration(store: Store, ev: m.Evidence, bank: list[dict[str, Any]], lang: str) -> dict[str, Any]:
    """{"independent": [...], "not_independent": [...], "other_copies": {...}} for one record.
    `bank`: the bank entries that match the item (sha256 or PDQ), as takedown._item lists them."""
    independent, own = [], []
    for b in bank:
        if b["media_sha256"] == ev.media_sha256:
            own.append(b | {"why_not": _P[_lang(lang)]["own_entry"]})
            continue
        altered = ev.matched_sha256 is not None and b["media_sha256"] == ev.matched_sha256 and (ev.match_distance or 0) > 0
        kind = "altered_copy" if altered or b["signal"] == "pdq" else "copy"
        independent.append(b | {"kind": kind, "text": _P[_lang(lang)][kind].format(case=b["case_id"])})
    with store.session() as s:
        rows = s.exec(select(m.Post.platform, m.Post.id).join(m.Sighting, m.Sighting.post_pk == m.Post.id).where(
            m.Sighting.media_sha256 == ev.media_sha256, m.Sighting.post_pk != ev.post_pk)).all()
    posts = {pk: platform for platform, pk in rows}
    platforms = sorted(set(posts.values()))
    copies = {"count": len(posts), "platforms": platforms, "text": None}
    if posts:
        copies["text"] = _P[_lang(lang)]["copies"].format(n=len(posts), where=_P[_lang(lang)]["and"].join(platforms))
    return {"independent": independent, "not_independent": own, "other_copies": copies}


def bank_entries_for(store: Store, ev: m.Evidence, pdq: str | None) -> list[BankEntry]:
    """Bank entries matching the item's file, the original it copies, or its PDQ hash."""
    from sqlalchemy import or_

    shas = [ev.media_sha256] + ([ev.matched_sha256] if ev.matched_sha256 else [])
    match = [(BankEntry.signal == "sha256") & (BankEntry.hash_hex.in_(shas))]  # type: ignore[attr-defined]
    if pdq:
        match.append((BankEntry.signal == "pdq") & (BankEntry.hash_hex == pdq))
    with store.session() as s:
        return list(s.exec(select(BankEntry).where(or_(BankEntry.media_sha256.in_(shas), *match))  # type: ignore[union-attr]
                           .order_by(BankEntry.id)).all())


# -- reasons in the notice's language -----------------------------------------------------------

_KO_REASONS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"classifier (\S+) scored ([\d.]+) (>=|<) ([\d.]+) \(mean of the top (\d+) of (\d+) sampled frames\)"),
     "분류 모델 {0}의 점수 {1} ({2} 기준값 {3}, 표본 프레임 {5}개 중 상위 {4}개의 평균)"),
    (re.compile(r"classifier (\S+) scored ([\d.]+) (>=|<) ([\d.]+)"), "분류 모델 {0}의 점수 {1} ({2} 기준값 {3})"),
    (re.compile(r"classifier scored ([\d.]+)(?: (>=|<) ([\d.]+))?"), "분류 모델 점수 {0}"),
    (re.compile(r"ensemble of (\d+) classifiers scored ([\d.]+)"), "분류 모델 {0}개 앙상블의 점수 {1}"),
    (re.compile(r"^scored ([\d.]+) (>=|<) ([\d.]+)"), "점수 {0} ({1} 기준값 {2})"),
    (re.compile(r"C2PA declares generative AI"), "C2PA 정보가 생성형 인공지능으로 만든 것임을 선언합니다"),
    (re.compile(r"frames scoring >= ([\d.]+) at (.+)"), "점수가 {0} 이상인 프레임 구간: {1}"),
    (re.compile(r"(\d+) frames sampled: (\d+) spread evenly, (\d+) at scene changes"),
     "프레임 {0}개 분석: 균등 표본 {1}개, 장면 전환 {2}개"),
    (re.compile(r"(\d+) frames sampled: (\d+) spread evenly, no scene change found"),
     "프레임 {0}개 분석: 균등 표본 {1}개, 장면 전환 없음"),
    (re.compile(r"faces found in (\d+) of (\d+) sampled frames"), "표본 프레임 {1}개 중 {0}개에서 얼굴을 찾아 분석"),
    (re.compile(r"C2PA manifest.* declares (\S+)"), "C2PA 매니페스트가 {0}(을)를 선언합니다"),
    (re.compile(r"C2PA manifest present"), "C2PA 매니페스트가 있습니다"),
    (re.compile(r"altered after it was signed"), "서명된 뒤에 변경되었습니다 (변조)"),
    (re.compile(r"C2PA signature or manifest does not validate"), "C2PA 서명 또는 매니페스트가 유효하지 않습니다"),
    (re.compile(r"invisible watermark of (.+?) decoded"), "{0}의 비가시 워터마크가 검출되었습니다"),
    (re.compile(r"no known invisible watermark decoded"), "알려진 비가시 워터마크가 검출되지 않았습니다"),
    (re.compile(r"unsigned XMP metadata declares the IPTC digital source type (\S+)"),
     "서명되지 않은 XMP 메타데이터가 IPTC 디지털 출처 유형 {0}을(를) 선언합니다"),
    (re.compile(r"no AI generator metadata"), "인공지능 생성 도구의 메타데이터가 없습니다"),
    (re.compile(r"domain check: inside the data the model was validated on \(distance ([\d.]+) <= limit ([\d.]+)\)"),
     "도메인 검사: 모델이 검증된 데이터 범위 안 (거리 {0} ≤ 한계 {1})"),
    (re.compile(r"domain check: outside the data the model was validated on \(distance ([\d.]+) > limit ([\d.]+)\)"),
     "도메인 검사: 모델이 검증된 데이터 범위 밖 (거리 {0} > 한계 {1}), 점수만으로는 판정하지 않음"),
    (re.compile(r"outside the data this model was validated on: distance ([\d.]+) > limit ([\d.]+)"),
     "모델이 검증된 데이터 범위 밖 (거리 {0} > 한계 {1}): 점수만으로는 판정하지 않음"),
    (re.compile(r"model not calibrated"), "모델이 보정되지 않음: 점수만으로는 판정하지 않음"),
    (re.compile(r"the signer (.+?) is not on the trust list"),
     "서명자 {0}은(는) 신뢰 목록에 없으므로 최대 '가짜 가능성 높음'으로만 판정"),
    (re.compile(r"known[- ]fakes? bank"), "알려진 딥페이크 목록과 일치합니다"),
    (re.compile(r"re-?upload|duplicate of"), "이전에 판정된 파일의 재게시본입니다"),
]

_KO_OUTCOMES = {"fake": "합성(가짜)", "real": "실제", "inconclusive": "판단 불가", "error": "분석 오류",
                "absent": "없음", "present": "있음", "valid": "유효", "invalid": "무효"}
_KO_BANDS = {"confirmed_ai": "인공지능 생성 확인", "likely_fake": "딥페이크 가능성 높음",
             "needs_review": "검토 필요", "no_signal": "신호 없음"}


def localise_reason(reason: str, lang: str) -> str | None:
    """`reason` in `lang`; None when a Korean notice has no translation for it (the original
    stays in notice.json, and the notice says so rather than mixing languages)."""
    if _lang(lang) != "ko":
        return reason
    for pattern, template in _KO_REASONS:
        found = pattern.search(reason)
        if found:
            return template.format(*[g if g is not None else "" for g in found.groups()])
    return None


def localise_reasons(reasons: list[str], lang: str) -> list[str]:
    shown = [r for r in (localise_reason(x, lang) for x in reasons) if r is not None]
    left = len(reasons) - len(shown)
    if left:
        shown.append(_P[_lang(lang)]["untranslated"].format(n=left))
    return list(dict.fromkeys(shown))  # two reasons may translate to one sentence


def outcome_word(outcome: str, lang: str) -> str:
    return _KO_OUTCOMES.get(outcome, outcome) if _lang(lang) == "ko" else outcome


def kind_word(kind: str, lang: str) -> str:
    return {"image": "이미지", "video": "영상"}.get(kind, kind) if _lang(lang) == "ko" else kind


def band_word(band: str, lang: str) -> str:
    return _KO_BANDS.get(band, band) if _lang(lang) == "ko" else band


# -- hashtags --------------------------------------------------------------------------------


def extra_hashtags(text: str | None, hashtags: list[str]) -> list[str]:
    """The hashtags not already written in the post text, each once, as '#tag'."""
    body = (text or "").casefold()
    out: list[str] = []
    for tag in hashtags:
        tag = str(tag).lstrip("#").strip()
        shown = f"#{tag}"
        if tag and shown.casefold() not in body and shown not in out:
            out.append(shown)
    return out


# -- screenshot and stills -------------------------------------------------------------------

CROP_MARGIN = 16


def crop_to_content(png: bytes, background_tolerance: int = 12) -> bytes | None:
    """The screenshot cropped to what differs from the page background (the colour of its
    corners), plus a margin; None when there is nothing to crop (or it cannot be read)."""
    from PIL import Image, ImageChops, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(png)).convert("RGB")
    except (UnidentifiedImageError, OSError):
        return None
    background = Image.new("RGB", image.size, image.getpixel((0, 0)))
    diff = ImageChops.difference(image, background).convert("L").point(lambda v: 255 if v > background_tolerance else 0)
    box = diff.getbbox()
    if box is None:
        return None
    left, top, right, bottom = (max(0, box[0] - CROP_MARGIN), max(0, box[1] - CROP_MARGIN),
                                min(image.width, box[2] + CROP_MARGIN), min(image.height, box[3] + CROP_MARGIN))
    if (right - left) * (bottom - top) >= 0.95 * image.width * image.height:
        return None  # the content fills the page: the full screenshot is the crop
    out = io.BytesIO()
    image.crop((left, top, right, bottom)).save(out, "PNG")
    return out.getvalue()


def video_stills(data: bytes, segments: list[list[float]], *, n: int = 4, max_side: int = 1280) -> list[dict[str, Any]]:
    """JPEG stills of a video: `n` key frames (evenly spread, plus scene changes) and the start
    and middle of each suspect segment. [] when the video cannot be decoded."""
    from detectors.video import frames_at, sample_frames_and_scene_changes

    stills: list[dict[str, Any]] = []
    try:
        for f in sample_frames_and_scene_changes(data, n, max_side=max_side):
            stills.append({"t_s": f.t_s, "role": "key frame", "jpeg": _jpeg(f.image)})
        offsets = sorted({round(t, 2) for a, b in segments for t in (a, (a + b) / 2)})
        if offsets:
            for f in frames_at(data, offsets, max_side=max_side):
                stills.append({"t_s": f.t_s, "role": "suspect segment frame", "jpeg": _jpeg(f.image)})
    except ValueError:  # MediaDecodeError is one: an undecodable video gets no stills
        return []
    return stills


def _jpeg(image: Any) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


# -- phrases -------------------------------------------------------------------------------

_P = {
    "en": {
        "own_entry": "made from this same file (its own verdict or review): not independent",
        "copy": "exact copy of known-fakes reference {case}",
        "altered_copy": "altered copy of known-fakes reference {case}",
        "copies": "matches {n} other copies seen on {where}",
        "and": " and ",
        "untranslated": "{n} further reason(s) in notice.json",
    },
    "ko": {
        "own_entry": "이 파일 자체로 만든 항목(자체 판정 또는 검토)이므로 독립적인 근거가 아닙니다",
        "copy": "알려진 딥페이크 참조 {case}와(과) 동일한 사본",
        "altered_copy": "알려진 딥페이크 참조 {case}의 변형 사본",
        "copies": "{where}에서 발견된 다른 사본 {n}건과 일치합니다",
        "and": ", ",
        "untranslated": "그 밖의 근거 {n}건은 notice.json에 원문으로 기재되어 있습니다",
    },
}


def _lang(lang: str) -> str:
    return "ko" if lang == "ko" else "en"

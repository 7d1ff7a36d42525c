"""The campaign spec: typed, validated once, with errors that name the file and the field.

A spec is a YAML file a monitoring team writes. Unknown keys are errors (a typo must not turn
a setting silently off). Times without a zone are refused: an election window is a legal fact
and "midnight" means nothing without a zone. Times are kept in UTC; `window.timezone` is the
zone they are shown in.
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_DATABASE = "sqlite:///var/deepwatch.db"
DEFAULT_BLOBS = "var/blobs"
EMBEDDED = "embedded"  # a source base_url that means "the bundled demo platform, started for this run"


class SpecError(ValueError):
    """A campaign file that cannot be used; the message names the file and the field."""


def _utc(v: datetime | None) -> datetime | None:
    """A zoned time as UTC; a time without a zone is refused (it means nothing legally)."""
    if v is not None and v.tzinfo is None:
        raise ValueError("needs a time zone, e.g. 2026-06-03T18:00:00+09:00")
    return v.astimezone(timezone.utc) if v is not None else None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Window(_Strict):
    start: datetime | None = None
    end: datetime | None = None
    timezone: str = "UTC"

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        return _utc(v)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name like Asia/Seoul)") from None
        return v

    @model_validator(mode="after")
    def _ordered(self) -> "Window":
        if self.start and self.end and self.end <= self.start:
            raise ValueError("window.end must be after window.start")
        return self

    def contains(self, when: datetime) -> bool:
        return (self.start is None or when >= self.start) and (self.end is None or when < self.end)


class Source(_Strict):
    name: str = Field(min_length=1)
    type: str
    params: dict[str, Any] = Field(default_factory=dict)
    # Which of the campaign's terms this source searches; default: all keywords and hashtags.
    terms: list[str] | None = None

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        from agents.registry import AGENT_TYPES

        if v not in AGENT_TYPES:
            raise ValueError(f"unknown source type {v!r}; known: {', '.join(sorted(AGENT_TYPES))}")
        return v

    @model_validator(mode="after")
    def _site_profile_travels(self) -> "Source":
        # A profile file lives on the driver's machine, not on every Ray node: agents get its contents.
        if self.type == "site":
            from agents.site import inline_profile

            inline_profile(self.params)
        return self


class Limits(_Strict):
    max_posts: int = Field(default=10_000, gt=0)
    max_bytes: int = Field(default=5_000_000_000, gt=0)  # media bytes fetched in one run
    max_seconds: float = Field(default=3600, gt=0)
    max_media_bytes: int = Field(default=200_000_000, gt=0)  # one file


class Classifier(_Strict):
    model: str  # a Hugging Face hub id or a local path
    fake_label: str = "fake"
    # None: the threshold `deepwatch detectors eval` calibrated (calibration.json beside the
    # weights, recorded with each result with its false-positive rate), else 0.5.
    threshold: float | None = Field(default=None, ge=0, le=1)
    review_threshold: float = Field(default=0.3, ge=0, le=1)
    batch_size: int = Field(default=32, gt=0)
    revision: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> "Classifier":
        if self.threshold is not None and self.review_threshold > self.threshold:
            raise ValueError("review_threshold must not be above threshold")
        return self


class EnsembleMember(_Strict):
    """One model of an ensemble (`detectors.classifiers`)."""

    model: str  # a Hugging Face hub id or a local path
    fake_label: str = "fake"
    revision: str | None = None
    weight: float = Field(default=1.0, gt=0)
    # None: the model's calibrated threshold (calibration.json in its folder), else 0.5.
    threshold: float | None = Field(default=None, ge=0, le=1)


class Ensemble(_Strict):
    """How an ensemble's weighted mean of P(fake) is judged."""

    threshold: float = Field(default=0.5, ge=0, le=1)
    review_threshold: float = Field(default=0.3, ge=0, le=1)
    batch_size: int = Field(default=32, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> "Ensemble":
        if self.review_threshold > self.threshold:
            raise ValueError("review_threshold must not be above threshold")
        return self


class C2PATrust(_Strict):
    """Whose C2PA signatures can confirm AI (detectors/c2pa_trust.py). Paths are PEM files."""

    c2pa_trust_list: bool = True  # the bundled C2PA Conformance Program list
    anchors: list[str] = Field(default_factory=list)  # the deployment's own CAs
    allowed_signers: list[str] = Field(default_factory=list)  # end-entity certificates, one by one

    @field_validator("anchors", "allowed_signers")
    @classmethod
    def _readable_pem(cls, paths: list[str]) -> list[str]:
        from detectors.c2pa_trust import load_certs

        for path in paths:
            if not load_certs(path):  # raises TrustConfigError (a ValueError) naming the file
                raise ValueError(f"C2PA trust file {path}: holds no certificate")
        return paths


class Detectors(_Strict):
    classifier: Classifier | None = None
    # An ensemble instead of one classifier: scores combined by weighted mean (`ensemble`).
    classifiers: list[EnsembleMember] | None = None
    ensemble: Ensemble | None = None
    c2pa: bool = True
    c2pa_trust: C2PATrust = C2PATrust()
    watermark: bool = True
    # Unsigned provenance metadata (IPTC/XMP digital source type, EXIF, PNG text of generators).
    metadata: bool = True
    video_frames: int = Field(default=8, gt=0, le=256)
    # Faces in video frames (OpenCV's bundled Haar cascade), cropped and scored; with
    # video_frame_with_faces the whole frame is scored too and the higher score kept (right for
    # whole-image classifiers; set it false for a model trained on face crops only).
    video_faces: bool = True
    video_frame_with_faces: bool = True
    # Besides the evenly spread frames, up to max_scene_frames shot starts (luma-difference spikes).
    scene_changes: bool = True
    scene_threshold: float = Field(default=0.10, gt=0, le=1)
    max_scene_frames: int = Field(default=8, ge=0, le=64)
    # Near-duplicate thresholds (pHash Hamming distance, 64-bit hashes).
    phash_max_distance: int = Field(default=10, ge=0, le=32)
    # Reference sets (`deepwatch reference add --set NAME`) every analysed item is compared with;
    # unset: the whole reference library; [] : no comparison.
    references: list[str] | None = None

    @model_validator(mode="after")
    def _one_kind_of_classifier(self) -> "Detectors":
        if self.classifier is not None and self.classifiers is not None:
            raise ValueError("set either 'classifier' (one model) or 'classifiers' (an ensemble), not both")
        if self.classifiers is not None:
            if len(self.classifiers) < 2:
                raise ValueError("'classifiers' (an ensemble) needs at least two models; "
                                 "for one model use 'classifier'")
            seen = [(m.model, m.revision) for m in self.classifiers]
            repeated = sorted({m for m, r in seen if seen.count((m, r)) > 1})
            if repeated:
                raise ValueError(f"'classifiers' lists the same model twice: {', '.join(repeated)}")
        elif self.ensemble is not None:
            raise ValueError("'ensemble' settings need 'classifiers' (the ensemble's models)")
        return self

    def ensemble_settings(self) -> Ensemble:
        """The ensemble's threshold and batch size (defaults when `ensemble` is not given)."""
        return self.ensemble or Ensemble()


class Storage(_Strict):
    database: str = DEFAULT_DATABASE
    blobs: str = DEFAULT_BLOBS


class Network(_Strict):
    allow_networks: list[str] = Field(default_factory=list)  # CIDRs; the demo allows loopback
    contact_url: str = "https://github.com/deepwatch/deepwatch"  # named in every User-Agent
    timeout_s: float = Field(default=30, gt=0)
    respect_robots: bool = True
    # Politeness towards each host, for the whole campaign: the rate is shared out among the
    # workers that fetch (crawlers and fetch actors each hold their own client). 0 = no limit.
    per_host_concurrency: int = Field(default=2, ge=0)
    per_host_rps: float = Field(default=2.0, ge=0)

    @field_validator("allow_networks")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        import ipaddress

        for entry in v:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not a network in CIDR form, e.g. 127.0.0.0/8") from None
        return v


class Legal(_Strict):
    """What notices under the election law need. The pre-vote ban window is either given outright
    (`ban_start`, `ban_end`) or derived from `election_day` (a date in `window.timezone`) and
    `ban_days` before it, ending when election day ends (Korea's Public Official Election Act
    Art. 82-8 bans deepfake campaign material from 90 days before election day)."""

    election_day: date | None = None
    ban_days: int = Field(default=90, ge=0, le=3650)
    ban_start: datetime | None = None
    ban_end: datetime | None = None

    @field_validator("ban_start", "ban_end")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        return _utc(v)


class EvidenceSettings(_Strict):
    operator: str | None = None  # who captures (recorded with every capture); default "campaign:<name>"
    archive: bool = True  # keep the page and its media as a WACZ web archive
    tsa_url: str | None = None  # an RFC 3161 timestamp authority for seals
    tsa_cert: str | None = None  # its certificate (PEM path), to verify its tokens


class DemoPlatform(_Strict):
    seed: int = 7
    posts: int = Field(default=120, gt=0)
    # A fixed port keeps post and media URLs the same across runs, so a resumed or repeated run
    # finds what an earlier one stored; 0 = any free port. A busy port falls back to a free one.
    port: int = Field(default=8731, ge=0, le=65535)
    # Trust the demo world's own C2PA CA, so its planted signed fakes are confirmed: no outside
    # list knows that CA, and an untrusted signer can at most make a likely fake.
    trust_own_ca: bool = True


class Scaling(_Strict):
    fetch_actors: int = Field(default=2, gt=0)
    detector_actors: int = Field(default=1, gt=0)
    capture_evidence: bool = True  # screenshot every flagged post in the browser


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object) -> float:
    """Seconds from a number or a string like "90s", "15m", "2h", "1d"."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 15m, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip().lower()
        unit = _DURATION_UNITS.get(text[-1])
        try:
            seconds = float(text[:-1]) * unit if unit else float(text)
        except ValueError:
            raise ValueError(f"expected a duration like 90s, 15m, 2h or 1d, got {value!r}") from None
    else:
        raise ValueError(f"expected a duration like 15m, got {value!r}")
    if not seconds > 0:
        raise ValueError(f"a duration must be positive, got {value!r}")
    return seconds


class CampaignSpec(_Strict):
    name: str = Field(min_length=1, pattern=r"^[\w.\-]+$")
    description: str = ""
    # Re-poll every source this often until the window ends (or limits.max_seconds passes);
    # None = one pass. A number is seconds; "15m", "2h" also work.
    interval: float | None = None
    keywords: list[str] = Field(default_factory=list)
    hashtags: list[str] = Field(default_factory=list)
    sources: list[Source] = Field(min_length=1)
    window: Window = Window()
    limits: Limits = Limits()
    detectors: Detectors = Detectors()
    storage: Storage = Storage()
    network: Network = Network()
    demo_platform: DemoPlatform = DemoPlatform()
    scaling: Scaling = Scaling()
    legal: Legal = Legal()
    evidence: EvidenceSettings = EvidenceSettings()

    @field_validator("interval", mode="before")
    @classmethod
    def _duration(cls, v: object) -> float | None:
        return None if v is None else parse_duration(v)

    @model_validator(mode="after")
    def _has_terms(self) -> "CampaignSpec":
        searching = [s for s in self.sources if _searches(s.type, s.params)]
        if searching and not self.keywords and not self.hashtags and not all(s.terms for s in searching):
            raise ValueError("a campaign with search sources needs keywords, hashtags or per-source terms")
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique; repeated: {', '.join(dupes)}")
        return self

    def terms_for(self, source: Source) -> list[str]:
        if not _searches(source.type, source.params):
            return [""]  # a feed (RSS, channel, web page) is read once per pass, not per term
        if source.terms:
            return list(source.terms)
        return list(self.keywords) + ["#" + h.lstrip("#") for h in self.hashtags]

    def ban_window(self) -> tuple[datetime | None, datetime | None]:
        """The pre-vote ban window in UTC, (None, None) when not configured."""
        legal = self.legal
        if legal.ban_start or legal.ban_end:
            return legal.ban_start, legal.ban_end
        if legal.election_day is None:
            return None, None
        zone = ZoneInfo(self.window.timezone)
        day_start = datetime.combine(legal.election_day, time.min, tzinfo=zone)
        start = day_start - timedelta(days=legal.ban_days)
        end = day_start + timedelta(days=1)
        return start.astimezone(timezone.utc), end.astimezone(timezone.utc)

    def operator(self) -> str:
        return self.evidence.operator or f"campaign:{self.name}"

    def uses_embedded_platform(self) -> bool:
        return any(s.params.get("base_url") == EMBEDDED for s in self.sources)


def _searches(agent_type: str, params: dict[str, Any] | None = None) -> bool:
    from agents.registry import AGENT_TYPES

    factory = AGENT_TYPES[agent_type].factory
    # A `site` source searches or lists depending on its profile, so the type asks its params.
    decide = getattr(factory, "searches_for", None)
    if decide is not None:
        return bool(decide(params or {}))
    return bool(getattr(factory, "searches", True))


def load_spec(path: str | Path) -> tuple[CampaignSpec, str]:
    """Read and validate a campaign file; returns the spec and its text (saved with the run)."""
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such campaign file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read: {exc}") from None
    return parse_spec_text(text, origin=str(path))


def parse_spec_text(text: str, origin: str = "<spec>") -> tuple[CampaignSpec, str]:
    """Validate a campaign's YAML text (a file's, or the copy saved with a campaign)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{origin}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{origin}: expected a mapping of settings at the top level, got {type(data).__name__}")
    return parse_spec(data, origin=origin), text


def parse_spec(data: dict[str, Any], origin: str = "<spec>") -> CampaignSpec:
    try:
        return CampaignSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_describe(exc, origin)) from None


def _describe(exc: ValidationError, origin: str) -> str:
    lines = [f"{origin}: invalid campaign spec ({exc.error_count()} problem(s)):"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = "unknown key (not a setting; check the spelling)" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  - field '{where}': {msg}")
    return "\n".join(lines)

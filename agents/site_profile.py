"""Site profiles: a YAML file that tells the `site` agent how to read a public site, no code.

A profile names the listing or search URL (with `{term}` and the profile's own variables), how
to reach the next page, whether the page needs JavaScript, and one selector per post field. It is
validated like a campaign spec: unknown keys are refused and every error names the field, so a
person writing a profile for a new board learns at once what is wrong (see docs/site-profiles.md).

Shipped profiles live in agents/profiles/NAME.yaml; a source may also name a .yaml path.
"""
from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from string import Formatter
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import lxml.etree
import yaml
from cssselect import GenericTranslator, SelectorError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_TRANSLATOR = GenericTranslator()
MAX_PAGES_LIMIT = 1000


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Selector(_Strict):
    """Where one value sits inside a post (or a page): a CSS or an XPath selector.

    `attr` reads an attribute instead of the text ("href", "src", "datetime"...); `regex` keeps
    only the first group (or the whole match) of the value, e.g. the number in `?no=123`; `all`
    takes every match (hashtags, images) instead of the first.
    """

    css: str | None = None
    xpath: str | None = None
    attr: str | None = None
    regex: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        # A bare string is a CSS selector read as text: the common case stays one line.
        return {"css": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_kind(self) -> "Selector":
        if (self.css is None) == (self.xpath is None):
            raise ValueError("give exactly one of css or xpath")
        if self.css is not None:
            try:
                _TRANSLATOR.css_to_xpath(self.css)
            except SelectorError as exc:
                raise ValueError(f"css {self.css!r} is not a valid selector: {exc}") from None
        else:
            try:
                lxml.etree.XPath(self.xpath)
            except lxml.etree.XPathSyntaxError as exc:
                raise ValueError(f"xpath {self.xpath!r} is not valid: {exc}") from None
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"regex {self.regex!r} does not compile: {exc}") from None
        return self

    def describe(self) -> str:
        where = f"css {self.css!r}" if self.css is not None else f"xpath {self.xpath!r}"
        return where + (f" @{self.attr}" if self.attr else "") + (f" ~ /{self.regex}/" if self.regex else "")


class TimeSelector(Selector):
    """A post's time: where it is, how it is written (strptime formats, or iso/epoch) and its zone."""

    formats: list[str] = Field(default_factory=lambda: ["iso"], min_length=1)
    zone: str = "UTC"  # the zone a time written without an offset is in (Asia/Seoul for Korean boards)

    @field_validator("zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Asia/Seoul)") from None
        return value

    @field_validator("formats")
    @classmethod
    def _formats(cls, value: list[str]) -> list[str]:
        for fmt in value:
            if fmt in ("iso", "epoch", "epoch_ms", "relative"):
                continue
            if "%" not in fmt:
                raise ValueError(f"format {fmt!r} has no % directive; use strptime codes, iso, epoch, epoch_ms or relative")
            try:
                datetime(2026, 6, 3, 9, 5, 7).strftime(fmt)
            except ValueError as exc:
                raise ValueError(f"format {fmt!r} is not a strptime format: {exc}") from None
        return value


class PostSelectors(_Strict):
    """One selector per post field; `container` finds each post, the others look inside it."""

    container: Selector
    id: Selector | None = None  # default: the post URL
    url: Selector
    author: Selector | None = None
    time: TimeSelector | None = None  # without one, posts carry the time they were read
    text: list[Selector] = Field(min_length=1)  # joined with blank lines (title, body...)
    hashtags: Selector | None = None
    images: Selector | None = None
    videos: Selector | None = None  # direct video files (<video src>, <source src>)
    embeds: Selector | None = None  # player pages (iframes): resolved by yt-dlp at fetch time

    @model_validator(mode="before")
    @classmethod
    def _text_list(cls, value: Any) -> Any:
        if isinstance(value, dict) and "text" in value and not isinstance(value["text"], list):
            value = {**value, "text": [value["text"]]}
        return value


class Paging(_Strict):
    """How to reach the next page: a "next" link, a page number parameter, a cursor, or none."""

    mode: Literal["none", "next_link", "page_param", "cursor"] = "none"
    next_link: Selector | None = None  # mode next_link: the link's href (attr defaults to href)
    param: str | None = None  # page_param / cursor: the query parameter set on the URL
    start: int = Field(default=1, ge=0)  # page_param: the first page's number
    step: int = Field(default=1, ge=1)  # page_param: 1 for page numbers, N for offsets
    cursor: Selector | None = None  # mode cursor: where the page says the next cursor is
    max_pages: int = Field(default=5, ge=1, le=MAX_PAGES_LIMIT)

    @model_validator(mode="after")
    def _needs(self) -> "Paging":
        if self.mode == "next_link" and self.next_link is None:
            raise ValueError("mode next_link needs next_link (the selector of the next-page link)")
        if self.mode in ("page_param", "cursor") and not self.param:
            raise ValueError(f"mode {self.mode} needs param (the query parameter to set)")
        if self.mode == "cursor" and self.cursor is None:
            raise ValueError("mode cursor needs cursor (the selector of the next cursor value)")
        return self


class Render(_Strict):
    """The browser path: render with JavaScript, scroll, click "more" buttons."""

    javascript: bool = False
    wait_for: Selector | None = None  # default: the post container
    scrolls: int = Field(default=0, ge=0, le=200)  # scroll to the bottom this many times
    more_button: Selector | None = None  # clicked (repeatedly, up to `clicks`) to load more posts
    clicks: int = Field(default=0, ge=0, le=200)
    timeout_s: float = Field(default=10, gt=0, le=120)  # per wait for the page to change

    @model_validator(mode="after")
    def _browser_only(self) -> "Render":
        if not self.javascript and (self.scrolls or self.more_button or self.clicks or self.wait_for):
            raise ValueError("scrolls, more_button, clicks and wait_for need javascript: true")
        if self.more_button is not None and self.more_button.css is None:
            raise ValueError("more_button must be a css selector (the browser clicks it)")
        if self.wait_for is not None and self.wait_for.css is None:
            raise ValueError("wait_for must be a css selector (the browser waits for it)")
        if self.more_button is not None and not self.clicks:
            raise ValueError("more_button needs clicks (how many times at most)")
        return self


class SiteProfile(_Strict):
    name: str
    platform: str  # recorded in every post (Post.platform), e.g. "dcinside"
    description: str = ""
    # First page: absolute, or a path under base_url. {term}, {bare} (the term without a leading
    # # or @, for tag pages) and variables are filled in, URL-quoted.
    url: str
    base_url: str | None = None  # a source's params.base_url replaces it (a mirror, the demo platform)
    variables: dict[str, str | None] = Field(default_factory=dict)  # name -> default (null: required)
    lang: str | None = None
    paging: Paging = Field(default_factory=Paging)
    render: Render = Field(default_factory=Render)
    post: PostSelectors

    @field_validator("name", "platform")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"{value!r} must be lowercase letters, digits, - and _ (at most 64)")
        return value

    @model_validator(mode="after")
    def _template(self) -> "SiteProfile":
        try:
            names = [f for _, f, _, _ in Formatter().parse(self.url) if f is not None]
        except ValueError as exc:
            raise ValueError(f"url template {self.url!r}: {exc}") from None
        for name in names:
            if name not in ("term", "bare") and name not in self.variables:
                raise ValueError(f"url uses {{{name}}}, which is neither term, bare nor one of variables")
        sample = self.url.replace("{term}", "x").replace("{bare}", "x")
        for var in self.variables:
            sample = sample.replace("{" + var + "}", "x")
        if self.base_url is not None:
            base = urlsplit(self.base_url)
            if base.scheme not in ("http", "https") or not base.netloc:
                raise ValueError(f"base_url must be an absolute http(s) URL, got {self.base_url!r}")
        parts = urlsplit(sample)
        relative = sample.startswith("/") and not sample.startswith("//")
        if not relative and (parts.scheme not in ("http", "https") or not parts.netloc):
            raise ValueError(f"url must be an absolute http(s) URL template or a path starting with /, got {self.url!r}")
        if "term" in self.variables or "bare" in self.variables:
            raise ValueError("variables must not define term or bare: they are the campaign's search term")
        return self

    @property
    def searches(self) -> bool:
        """A profile whose URL takes {term} (or {bare}: the term without # or @) is searched once per
        campaign term; others are listings."""
        return any(f in ("term", "bare") for _, f, _, _ in Formatter().parse(self.url))


def profile_dir() -> Path:
    return Path(str(resources.files("agents").joinpath("profiles")))


def shipped_profiles() -> list[str]:
    return sorted(p.stem for p in profile_dir().glob("*.yaml"))


def _locate(ref: str) -> Path:
    if not isinstance(ref, str) or not ref.strip():
        raise ProfileError(f"profile must be a shipped profile name or a .yaml path, got {ref!r}")
    ref = ref.strip()
    if ref.endswith((".yaml", ".yml")):
        path = Path(ref).expanduser()
        if not path.is_file():
            raise ProfileError(f"profile file {ref} does not exist")
        return path
    if not _NAME.match(ref):
        raise ProfileError(f"profile {ref!r} is neither a shipped profile name nor a .yaml path")
    path = profile_dir() / f"{ref}.yaml"
    if not path.is_file():
        raise ProfileError(f"no shipped profile {ref!r}; shipped: {', '.join(shipped_profiles())}")
    return path


def load_profile(ref: Any) -> SiteProfile:
    """The validated profile `ref` names (shipped name or path) or holds (a mapping: an inline
    profile); ProfileError names what is wrong."""
    if isinstance(ref, dict):
        return parse_profile(ref, origin=f"inline profile {ref.get('name', '')!s}".rstrip())
    path = _locate(ref)
    return _load(str(path.resolve()), path.stat().st_mtime_ns)


@lru_cache(maxsize=64)
def _load(path: str, _mtime: int) -> SiteProfile:
    # Keyed on mtime too, so an edited profile is re-read by `profile test` in the same process.
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ProfileError(f"{path}: cannot read profile: {exc}") from None
    return parse_profile(data, origin=path)


def parse_profile(data: Any, origin: str = "<profile>") -> SiteProfile:
    if not isinstance(data, dict):
        raise ProfileError(f"{origin}: expected a mapping of profile settings, got {type(data).__name__}")
    try:
        return SiteProfile.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = "unknown key (not a profile setting; check the spelling)" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"  {where}: {msg}")
        raise ProfileError(f"{origin}: invalid site profile:\n" + "\n".join(lines)) from None

"""Takedown deployment configuration: who sends, on what legal basis, to which platform channel.

Holds the YAML-backed `TakedownConfig` (with `Sender`, `LegalBasis`, `PlatformSettings`), its
loaders `load_takedown_config` / `parse_takedown_config`, the `LocalText` / `localise` helpers for
per-language texts, and `TakedownError`, the error every takedown module raises. It imports
nothing from the other takedown modules, so they can all import it.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

TEMPLATES_DIR = Path(__file__).with_name("templates")
DEFAULT_CONFIG_PATH = TEMPLATES_DIR / "takedown-default.yaml"


class TakedownError(RuntimeError):
    """A packet that cannot be built or a request that cannot move; the message says why."""


# -- deployment configuration -----------------------------------------------------------------

Language = Literal["ko", "en"]
# A text given once for every language, or per language ({en: ..., ko: ...}).
LocalText = Union[str, dict[Language, str]]


def localise(text: LocalText, language: str) -> str:
    if isinstance(text, str):
        return text
    return text.get(language) or text.get("en") or next(iter(text.values()))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _non_empty_text(value: LocalText) -> LocalText:
    texts = [value] if isinstance(value, str) else list(value.values())
    if not texts or not all(t.strip() for t in texts):
        raise ValueError("must not be empty")
    return value


class Sender(_Strict):
    organisation: str = Field(min_length=1)
    contact_name: str = Field(min_length=1)
    email: str
    address: str = Field(min_length=1)

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        # DSA Art. 16(2)(c) wants an electronic mail address; a plain shape check catches typos.
        if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", v):
            raise ValueError(f"not an e-mail address: {v!r}")
        return v

    def one_line(self) -> str:
        return f"{self.organisation}, {self.contact_name} <{self.email}>"


class LegalBasis(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]*$")
    title: LocalText
    text: LocalText

    _check_title = field_validator("title", "text")(_non_empty_text)


class PlatformSettings(_Strict):
    name: str = Field(min_length=1)  # as in Evidence.platform
    display_name: str = Field(min_length=1)
    notice_channel: str = Field(min_length=1)  # the platform's notice form URL or e-mail address
    template: str = "generic"  # templates/notice-<template>.html
    language: Language = "en"
    legal_basis: list[str] = Field(default_factory=list)  # ids; empty: the config's default_legal_basis
    # Text a platform serves (with HTTP 200) in place of a removed post, e.g. "This post has been removed".
    removed_markers: list[str] = Field(default_factory=list)

    @field_validator("template")
    @classmethod
    def _template_exists(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9_-]+", v) or not (TEMPLATES_DIR / f"notice-{v}.html").is_file():
            shipped = sorted(p.stem.removeprefix("notice-") for p in TEMPLATES_DIR.glob("notice-*.html"))
            raise ValueError(f"no template {v!r}; shipped templates: {', '.join(shipped)}")
        return v


class TakedownConfig(_Strict):
    timezone: str = "UTC"  # dates are shown in the campaign's zone; this one when it names none
    sender: Sender
    legal_basis: list[LegalBasis] = Field(min_length=1)
    default_legal_basis: list[str] = Field(min_length=1)
    good_faith_statement: LocalText
    platforms: list[PlatformSettings] = Field(min_length=1)

    _check_statement = field_validator("good_faith_statement")(_non_empty_text)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        if _zone_or_none(v) is None:
            raise ValueError(f"unknown time zone {v!r} (use an IANA name like Asia/Seoul)")
        return v

    @model_validator(mode="after")
    def _references(self) -> "TakedownConfig":
        ids = [b.id for b in self.legal_basis]
        if len(set(ids)) != len(ids):
            raise ValueError(f"legal_basis ids must be unique, got {ids}")
        names = [p.name for p in self.platforms]
        if len(set(names)) != len(names):
            raise ValueError(f"platform names must be unique, got {names}")
        for where, refs in [("default_legal_basis", self.default_legal_basis)] + [
            (f"platforms[{p.name}].legal_basis", p.legal_basis) for p in self.platforms
        ]:
            unknown = [r for r in refs if r not in ids]
            if unknown:
                raise ValueError(f"{where} names unknown legal basis {unknown}; defined: {ids}")
        return self

    def platform(self, name: str) -> PlatformSettings:
        for p in self.platforms:
            if p.name == name:
                return p
        raise TakedownError(
            f"platform {name!r} has no takedown settings; configured platforms: "
            f"{', '.join(p.name for p in self.platforms)}"
        )

    def bases_for(self, platform: PlatformSettings) -> list[LegalBasis]:
        wanted = platform.legal_basis or self.default_legal_basis
        by_id = {b.id: b for b in self.legal_basis}
        return [by_id[i] for i in wanted]


def load_takedown_config(path: str | Path | None = None) -> TakedownConfig:
    """Read a takedown config YAML (the shipped default when `path` is None); errors name the field."""
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    try:
        data = yaml.safe_load(path.read_text("utf-8"))
    except FileNotFoundError:
        raise TakedownError(f"{path}: no such takedown config file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise TakedownError(f"{path}: cannot read takedown config: {exc}") from None
    return parse_takedown_config(data, origin=str(path))


def parse_takedown_config(data: Any, origin: str = "<takedown config>") -> TakedownConfig:
    if not isinstance(data, dict):
        raise TakedownError(f"{origin}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return TakedownConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"{origin}: invalid takedown config ({exc.error_count()} problem(s)):"]
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = "unknown key (check the spelling)" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"  - field '{where}': {msg}")
        raise TakedownError("\n".join(lines)) from None


def _zone_or_none(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None

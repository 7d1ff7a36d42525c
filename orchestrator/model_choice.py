"""Which classifier a command runs: one rule for `scan`, `rescan` and campaigns.

In order: the model given on the command line (`--model`), the campaign's own `detectors`
(campaigns only; the caller passes it as `explicit`), `DEEPWATCH_MODEL`, then `model:` in
`$XDG_CONFIG_HOME/deepwatch/config.yaml` (default `~/.config/deepwatch/config.yaml`; a relative
path there is relative to that file). Never a folder that happens to exist under the current
directory: the same command must not run another detector set because it was started elsewhere.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

ENV_VAR = "DEEPWATCH_MODEL"
NOT_CONFIGURED = "not configured"


class ModelChoiceError(ValueError):
    """The configuration that names the model is unreadable; the message names the file."""


@dataclass(frozen=True)
class ModelChoice:
    model: str | None
    source: str  # "--model", "campaign", "DEEPWATCH_MODEL", the config file's path, or "not configured"

    def describe(self) -> str:
        return f"{self.model} (from {self.source})" if self.model else NOT_CONFIGURED


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "deepwatch" / "config.yaml"


def _from_config(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ModelChoiceError(f"{path}: not readable YAML: {exc}") from exc
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ModelChoiceError(f"{path}: expected a mapping with 'model:', got {type(data).__name__}")
    model = data.get("model")
    if model is None:
        return None
    if not isinstance(model, str) or not model.strip():
        raise ModelChoiceError(f"{path}: 'model' must be a hub id or a folder path, got {model!r}")
    local = Path(model).expanduser()
    if not local.is_absolute() and (model.startswith(".") or (path.parent / local).exists()):
        return str((path.parent / local).resolve())
    return str(local) if model.startswith("~") else model


def choose_model(explicit: str | None, *, explicit_source: str = "--model") -> ModelChoice:
    """The model to run and where that choice came from."""
    if explicit:
        return ModelChoice(explicit, explicit_source)
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return ModelChoice(env, ENV_VAR)
    path = config_path()
    model = _from_config(path)
    if model:
        return ModelChoice(model, str(path))
    return ModelChoice(None, NOT_CONFIGURED)


def not_configured_message() -> str:
    return (f"no classifier configured: give --model, set {ENV_VAR}, or put 'model: PATH' in {config_path()}; "
            "running the provenance detectors only (C2PA, watermark, metadata, known-fakes bank)")

"""Every serving knob in one place: frozen dataclasses, filled by `kinema serve` / `kinema worker`
from their options and the environment (KINEMA_API_KEYS)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

API_KEYS_ENV = "KINEMA_API_KEYS"  # comma-separated bearer keys


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; anything beyond is a 4xx that names the parameter."""

    max_prompt_chars: int = 1000
    max_seconds: float = 8.0
    max_fps: float = 24.0
    max_pixels: int = 256 * 256  # width x height of one frame
    max_steps: int = 50
    max_upload_bytes: int = 10 * 1024 * 1024
    max_extended_seconds: float = 32.0  # the whole clip after an extension
    max_active_per_key: int = 8  # queued + in progress; one more is 429


@dataclass(frozen=True)
class Defaults:
    """Settings a request leaves out (the OpenAI defaults, 4 s of 720x1280, are far beyond a CPU)."""

    seconds: str = "2"
    size: str = "64x64"
    fps: float = 8.0
    steps: int | None = None  # None: the model's own default (its folder's, else kinema's)
    guidance: float | None = None


@dataclass(frozen=True)
class ServeConfig:
    data_dir: Path = Path("kinema-data")
    database_url: str | None = None  # default: SQLite in data_dir
    model: str = "kinema-tiny"
    api_keys: tuple[str, ...] = ()  # empty: no authentication, every caller is one owner
    limits: Limits = field(default_factory=Limits)
    defaults: Defaults = field(default_factory=Defaults)
    lease_seconds: float = 30.0  # a job whose worker is silent this long is taken up again
    max_attempts: int = 3  # claims of one job before it fails as lost
    retention_hours: float = 24.0  # files of a finished video are deleted after; 0 keeps them
    cost_per_hour: float = 0.10  # USD per worker-hour, for the per-clip cost estimate
    poll_after_ms: int = 500  # the least openai-poll-after-ms the API suggests
    watermark: bool = True  # invisible watermark (the job id) on every served frame
    c2pa: bool = True  # served MP4s signed with a C2PA manifest

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'jobs.db').resolve()}"


def keys_from_env(given: list[str] | None = None) -> tuple[str, ...]:
    """API keys from options plus KINEMA_API_KEYS, without blanks or repeats."""
    keys = list(given or []) + os.environ.get(API_KEYS_ENV, "").split(",")
    return tuple(dict.fromkeys(k.strip() for k in keys if k.strip()))

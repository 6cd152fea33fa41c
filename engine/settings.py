"""User settings (device, threads, speech model), stored as JSON in the user's config folder."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .fileio import atomic_write_text

APP_NAME = "FusionDesk"
SPEECH_MODELS = {"english": "whisper-tiny.en", "multilingual": "whisper-base"}


def config_dir() -> Path:
    env = os.environ.get("FUSIONDESK_CONFIG_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def data_dir() -> Path:
    """Where user-made things live (trained heads, indexes)."""
    env = os.environ.get("FUSIONDESK_DATA_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


@dataclass
class Settings:
    device: str = "auto"  # auto | cpu | gpu
    threads: int = 0  # 0: one per physical core
    speech_model: str = "english"  # english (tiny.en) | multilingual (base)


def settings_path() -> Path:
    return config_dir() / "settings.json"


def load_settings() -> Settings:
    path = settings_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Settings()  # no file yet, or an unreadable one: defaults, and the next save repairs it
    known = {f.name for f in fields(Settings)}
    values = {k: v for k, v in raw.items() if k in known} if isinstance(raw, dict) else {}
    settings = Settings(**values)
    if settings.device not in ("auto", "cpu", "gpu"):
        settings.device = "auto"
    if settings.speech_model not in SPEECH_MODELS:
        settings.speech_model = "english"
    return settings


def save_settings(settings: Settings) -> Path:
    return atomic_write_text(settings_path(), json.dumps(asdict(settings), indent=2) + "\n")

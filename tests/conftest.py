"""Test-wide settings: kinema's per-user files (development C2PA certificates) go to a throwaway
folder, never the real home."""

import os
import tempfile

import pytest

os.environ.setdefault("KINEMA_HOME", tempfile.mkdtemp(prefix="kinema-home-"))


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh KINEMA_HOME with no configured C2PA credentials (the development chain is made)."""
    monkeypatch.setenv("KINEMA_HOME", str(tmp_path / "home"))
    for name in ("KINEMA_C2PA_CERT", "KINEMA_C2PA_KEY"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "home"

"""Test-wide settings: kinema's per-user files (development C2PA certificates) go to a throwaway
folder, never the real home."""

import os
import tempfile

os.environ.setdefault("KINEMA_HOME", tempfile.mkdtemp(prefix="kinema-home-"))

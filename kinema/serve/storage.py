"""A job's files, addressed by id only: data_dir/videos/<job id>/<claim token>/<variant file>,
and the files it is made from beside them: data_dir/videos/<job id>/<input file>.

Nothing from a request reaches a path: ids and tokens are checked against their exact formats
(and looked up in the job store first), variants come from a fixed table. Each attempt writes
under its own claim token, so a worker whose lease was taken over never touches the files of the
attempt that completed; every file is written to a temporary name and renamed into place.
Inputs (a start image, a last image, the clip to extend) are written before the job is queued,
so any worker that shares the data directory finds them, and they go when the job's folder goes.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

JOB_ID = re.compile(r"video_[0-9a-f]{32}")
TOKEN = re.compile(r"[0-9a-f]{32}")

# variant -> (file name, media type)
VARIANTS: dict[str, tuple[str, str]] = {
    "video": ("video.mp4", "video/mp4"),
    "thumbnail": ("thumbnail.webp", "image/webp"),
    "spritesheet": ("spritesheet.jpg", "image/jpeg"),
}

# the files a job may be made from, by name (the name is what the job's params record)
IMAGE_INPUTS = {"PNG": "input.png", "JPEG": "input.jpg", "WEBP": "input.webp"}  # input_reference
LAST_IMAGE_INPUTS = {"PNG": "last.png", "JPEG": "last.jpg", "WEBP": "last.webp"}  # last_reference
SOURCE_VIDEO = "source.mp4"
INPUTS = frozenset({*IMAGE_INPUTS.values(), *LAST_IMAGE_INPUTS.values(), SOURCE_VIDEO})


class Storage:
    def __init__(self, data_dir: str | os.PathLike[str]):
        self.root = Path(data_dir).resolve() / "videos"
        self.root.mkdir(parents=True, exist_ok=True)

    def job_dir(self, job_id: str) -> Path:
        if not JOB_ID.fullmatch(job_id):
            raise ValueError(f"not a video id: {job_id!r}")
        return self.root / job_id

    def attempt_dir(self, job_id: str, token: str, create: bool = False) -> Path:
        if not TOKEN.fullmatch(token):
            raise ValueError("not a claim token")
        folder = self.job_dir(job_id) / token
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        return folder

    def path(self, job_id: str, token: str, variant: str) -> Path:
        return self.attempt_dir(job_id, token) / VARIANTS[variant][0]

    def input_path(self, job_id: str, name: str) -> Path:
        if name not in INPUTS:
            raise ValueError(f"not an input file name: {name!r}")
        return self.job_dir(job_id) / name

    def put_input(self, job_id: str, name: str, data: bytes) -> Path:
        path = self.input_path(job_id, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_atomic(path, data)

    def copy_input(self, source: Path, job_id: str, name: str) -> Path:
        """A file (another job's output or input) as this job's input: a hard link where the
        file system allows it (files are never changed once written), else a copy."""
        path = self.input_path(job_id, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path

    def remove(self, job_id: str, token: str | None = None) -> None:
        """All files of a job, or of one attempt (then the job's folder too if it is empty)."""
        folder = self.job_dir(job_id) if token is None else self.attempt_dir(job_id, token)
        shutil.rmtree(folder, ignore_errors=True)
        if token is not None:
            with contextlib.suppress(OSError):  # other attempts' files, or already gone
                self.job_dir(job_id).rmdir()

    def prune(self, job_id: str, keep: str) -> None:
        """Remove the folders of the job's other attempts (lost or superseded workers)."""
        for child in self.job_dir(job_id).glob("*"):
            if child.name != keep and TOKEN.fullmatch(child.name):
                shutil.rmtree(child, ignore_errors=True)


def write_atomic(path: Path, data: bytes) -> Path:
    """Write bytes to a temporary file beside path, then rename it into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

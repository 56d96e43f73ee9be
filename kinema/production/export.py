"""Export a produced clip: the video, signed, and the files around it.

For `clip.mp4` (the primary file may also be .webm or .gif):

    clip.mp4               H.264 yuv420p (even sizes), the metadata as container tags, and a
                           C2PA manifest (kinema.production.provenance) unless c2pa is off
    clip.thumbnail.png     the middle frame
    clip.spritesheet.png   every frame in a grid
    clip.quality.json      the quality report (also in the metadata, key "quality")
    clip.gif, clip.webm    on request ("gif", "webm" in formats)

Signing credentials are resolved before anything is written. Each file is written under a
temporary name and moved into place, so a failure leaves no partial file; the MP4 is signed from
an unsigned temporary copy.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kinema.api import Video
from kinema.io.images import save_png, spritesheet
from kinema.pipeline.text_to_video import GenerationError
from kinema.production import provenance

FORMATS = ("mp4", "thumbnail", "spritesheet", "report", "gif", "webm")
DEFAULT_FORMATS = ("thumbnail", "spritesheet", "report")


@dataclass(frozen=True)
class ExportSettings:
    formats: tuple[str, ...] = DEFAULT_FORMATS  # besides the primary file
    c2pa: bool = True
    prompt: str = "text"  # "hash": the prompt is stored as its SHA-256, in the manifest and tags
    cert: Path | None = None  # None: KINEMA_C2PA_CERT, else the development chain
    key: Path | None = None
    crf: int = 23

    def check(self) -> None:
        unknown = set(self.formats) - set(FORMATS)
        if unknown:
            raise GenerationError(
                f"unknown export format(s) {', '.join(sorted(unknown))}; known: {', '.join(FORMATS)}"
            )
        if self.prompt not in ("text", "hash"):
            raise GenerationError(f"prompt must be stored as 'text' or 'hash', got {self.prompt!r}")


def sidecar(path: Path, kind: str) -> Path:
    """clip.mp4 -> clip.thumbnail.png, clip.quality.json, clip.gif, ..."""
    suffix = {"thumbnail": ".thumbnail.png", "spritesheet": ".spritesheet.png", "report": ".quality.json",
              "gif": ".gif", "webm": ".webm", "mp4": ".mp4"}[kind]  # fmt: skip
    return path.with_name(path.stem + suffix)


def file_metadata(metadata: dict, prompt: str = "text") -> dict:
    """The metadata as stored in files; with prompt="hash" the prompts become their SHA-256."""
    if prompt == "text":
        return metadata
    out = dict(metadata)
    for key in ("prompt", "expanded_prompt"):
        if out.get(key):
            out[f"{key}_sha256"] = provenance.prompt_hash(out.pop(key))
    return out


def _atomic(path: Path, write) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _write_video(video: Video, path: Path, meta: dict, crf: int) -> None:
    from kinema.io.video import write_video

    if path.suffix.lower() == ".gif":
        tags = {"comment": json.dumps(meta)}
    else:
        tags = {
            k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items() if v is not None
        }
    write_video(
        path,
        video.frames,
        video.fps,
        metadata=tags,
        crf=crf if path.suffix.lower() != ".gif" else 23,
    )


def check_export(settings: ExportSettings, path: str | Path) -> None:
    """Every problem export would meet, found before any work: formats, the output path, and the
    signing credentials (the development chain is made here on first use)."""
    settings.check()
    path = Path(path)
    if path.suffix.lower() not in (".mp4", ".gif", ".webm"):
        raise GenerationError(f"output must end in .mp4, .gif or .webm, got {path.name!r}")
    if settings.c2pa and "mp4" in (path.suffix.lower().lstrip("."), *settings.formats):
        provenance.signing_identity(settings.cert, settings.key)


def summary(
    video: Video, files: dict[str, Path], path: Path, settings: ExportSettings
) -> list[str]:
    """Lines for the command line: what was made, and written besides the video."""
    meta = video.metadata
    lines = []
    if meta.get("expanded_prompt") and meta["expanded_prompt"] != meta.get("prompt"):
        lines.append(f"expanded prompt ({meta.get('expander')}): {meta['expanded_prompt']}")
    production = meta.get("production", {})
    if production.get("interpolator") or production.get("upscaler"):
        lines.append(
            f"base {meta['base_width']}x{meta['base_height']} at {meta['base_fps']:g} fps; "
            f"interpolator {production.get('interpolator') or 'none'}, "
            f"upscaler {production.get('upscaler') or 'none'}"
        )
    if meta.get("watermark"):
        lines.append(
            f"watermark: generation {meta['watermark']['payload_hex']} (id {meta['generation_id']})"
        )
    if settings.c2pa and "mp4" in files:
        identity = provenance.signing_identity(settings.cert, settings.key)
        if identity.development:
            root = Path(identity.source) / "root.pem"
            lines.append(f"C2PA: signed with kinema's local development certificate; "
                         f"kinema verify {files['mp4']} --trust {root}")  # fmt: skip
        else:
            lines.append(f"C2PA: signed with {identity.source}")
    extras = [str(p) for p in files.values() if p != path]
    if extras:
        lines.append("also wrote " + ", ".join(extras))
    return lines


def export(
    video: Video, path: str | Path, settings: ExportSettings = ExportSettings()
) -> dict[str, Path]:
    """Write the clip and its files (see the module doc). Returns {kind: path}."""
    settings.check()
    path = Path(path)
    primary = path.suffix.lower().lstrip(".")
    if primary not in ("mp4", "gif", "webm"):
        raise GenerationError(f"output must end in .mp4, .gif or .webm, got {path.name!r}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: the folder {path.parent} does not exist")
    videos = [
        primary,
        *(f for f in ("mp4", "gif", "webm") if f in settings.formats and f != primary),
    ]
    identity = None
    if settings.c2pa and "mp4" in videos:
        identity = provenance.signing_identity(settings.cert, settings.key)  # problems surface now
    meta = file_metadata(video.metadata, settings.prompt)
    written: dict[str, Path] = {}
    for kind in videos:
        target = path if kind == primary else sidecar(path, kind)
        if kind == "mp4" and identity is not None:
            manifest = provenance.build_manifest(
                video.metadata, target.name, identity.development, settings.prompt
            )

            def signed(tmp: Path, manifest=manifest) -> None:
                unsigned = tmp.with_name(tmp.name + ".unsigned.mp4")
                try:
                    _write_video(video, unsigned, meta, settings.crf)
                    provenance.sign_mp4(unsigned, tmp, manifest, identity)
                finally:
                    unsigned.unlink(missing_ok=True)

            written[kind] = _atomic(target, signed)
        else:
            _write_video(video, target, meta, settings.crf)  # atomic itself
            written[kind] = target
    frames = video.frames
    if "thumbnail" in settings.formats:
        written["thumbnail"] = _atomic(sidecar(path, "thumbnail"),
                                       lambda p: save_png(p, frames[len(frames) // 2]))  # fmt: skip
    if "spritesheet" in settings.formats:
        written["spritesheet"] = _atomic(
            sidecar(path, "spritesheet"), lambda p: save_png(p, spritesheet(frames))
        )
    if "report" in settings.formats:
        report = {"file": path.name, "generation_id": video.metadata.get("generation_id"),
                  "quality": video.metadata.get("quality", {})}  # fmt: skip
        written["report"] = _atomic(sidecar(path, "report"),
                                    lambda p: p.write_text(json.dumps(report, indent=2) + "\n"))  # fmt: skip
    return written

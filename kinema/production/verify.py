"""Verify a clip: read its invisible watermark and its C2PA manifest, and check they agree.

A clip verifies when the watermark is found, the manifest is present and intact (signature and
content hashes), the manifest's watermark payload is the one read from the pixels, and, when
trust anchors are given, the signer chains to one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kinema.production import watermark as wm
from kinema.production.provenance import ProvenanceReport, read_provenance

C2PA_SUFFIXES = (".mp4", ".m4v", ".mov")


@dataclass(frozen=True)
class Verification:
    path: str
    watermark: wm.WatermarkReading
    provenance: ProvenanceReport | None  # None: not a format kinema signs
    trust_given: bool

    @property
    def problems(self) -> list[str]:
        out = []
        if not self.watermark.found:
            out.append("no kinema watermark found in the frames")
        p = self.provenance
        if p is None:
            out.append("not an MP4: no C2PA manifest to check")
        elif not p.found:
            out.append("no C2PA manifest")
        else:
            if not p.intact:
                out.append("the C2PA manifest does not validate: " + "; ".join(
                    f for f in p.failures if not f.startswith("signingCredential.untrusted")))  # fmt: skip
            if self.trust_given and not p.trusted:
                out.append("the signer is not trusted by the given root(s)")
            marked = p.generation.get("watermark")
            if marked and self.watermark.found and marked != self.watermark.payload_hex:
                out.append(
                    f"the manifest names watermark {marked} but the frames carry {self.watermark.payload_hex}"
                )
        return out

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"path": self.path, "ok": self.ok, "problems": self.problems,
                "watermark": self.watermark.to_dict(),
                "c2pa": None if self.provenance is None else self.provenance.to_dict()}  # fmt: skip


def verify(path: str | Path, trust: str | Path | None = None) -> Verification:
    """Read the watermark and the manifest of a video file. Raises VideoError for a file that is
    not a readable video, ProvenanceError for unusable trust anchors."""
    from kinema.io.video import read_video

    path = Path(path)
    frames, _, _ = read_video(path)  # a missing file or not a video: one clear line
    provenance = read_provenance(path, trust) if path.suffix.lower() in C2PA_SUFFIXES else None
    return Verification(str(path), wm.read(frames), provenance, trust is not None)


def describe(v: Verification, trust: str | Path | None = None) -> list[str]:
    """Human-readable lines for `kinema verify`."""
    w, p = v.watermark, v.provenance
    lines = [str(v.path)]
    if w.found:
        lines.append(f"  watermark: found, generation {w.payload_hex} (vote agreement {w.confidence:.2f}, "
                     f"{w.corrected_words} word(s) corrected, {w.votes_per_bit:g} votes per bit)")  # fmt: skip
    else:
        lines.append(f"  watermark: not found (vote agreement {w.confidence:.2f}, "
                     f"{w.failed_words} uncorrectable word(s), {w.votes_per_bit:g} votes per bit)")  # fmt: skip
    if p is None:
        lines.append("  c2pa: not checked (kinema signs MP4 files only)")
    elif not p.found:
        lines.append("  c2pa: no manifest")
    else:
        state = "intact" if p.intact else "INVALID"
        made = p.created.get("parameters", {})
        source = p.created.get("digitalSourceType", "").rsplit("/", 1)[-1] or "unknown source"
        lines.append(f"  c2pa: manifest {state} (SDK state {p.state}); created with "
                     f"{made.get('model', '?')}, seed {made.get('seed', '?')}, {source}")  # fmt: skip
        dev = " (kinema's local development certificate)" if p.development else ""
        lines.append(f"  signer: {p.signer or 'unknown'}{dev}")
        if trust is None:
            lines.append("  trust: not checked (give --trust ROOT.pem)")
        else:
            lines.append(f"  trust: {'trusted' if p.trusted else 'NOT trusted'} by {trust}")
        generation = p.generation
        prompt = generation.get("prompt") or (
            f"sha256 {generation['prompt_sha256'][:16]}..."
            if generation.get("prompt_sha256")
            else None
        )
        if prompt:
            lines.append(f"  prompt: {prompt}")
        if generation.get("generation_id"):
            lines.append(f"  generation id: {generation['generation_id']}")
    lines.append("verified" if v.ok else "NOT verified: " + "; ".join(v.problems))
    return lines

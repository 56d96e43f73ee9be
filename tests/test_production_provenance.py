"""C2PA provenance: the local development chain, signing an MP4, reading it back with and
without trust, tampering, user credentials, and hashing the prompt."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("c2pa")

from kinema.io.video import read_video, write_video  # noqa: E402
from kinema.production import provenance as prov  # noqa: E402
from kinema.world import parse_caption, place, render  # noqa: E402

META = {
    "prompt": "a red circle", "expanded_prompt": "a red circle moving left on a black background",
    "model": "kinema-tiny", "seed": 4, "steps": 20, "guidance": 3.0, "fps": 24, "width": 64,
    "height": 64, "generation_id": "0a1b2c3d" + "0" * 24, "production": {"upscaler": "bicubic"},
    "watermark": {"payload_hex": "0a1b2c3d"},
}  # fmt: skip


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("KINEMA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KINEMA_C2PA_CERT", raising=False)
    monkeypatch.delenv("KINEMA_C2PA_KEY", raising=False)
    return tmp_path / "home"


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    scene = place(parse_caption("a red circle moving left"), np.random.default_rng(0), 1.0)
    path = tmp_path_factory.mktemp("clip") / "plain.mp4"
    return write_video(path, render(scene, 64, 64, 9, 8), 8, metadata={"prompt": "a red circle"})


def sign(clip, out, identity, prompt="text"):
    manifest = prov.build_manifest(META, out.name, identity.development, prompt)
    prov.sign_mp4(clip, out, manifest, identity)
    return out


def test_dev_chain_is_made_once_and_signs_a_valid_manifest(home, clip, tmp_path):
    identity = prov.signing_identity()
    assert identity.development and identity.alg == "es256"
    assert (home / "c2pa-dev" / "root.pem").is_file()
    assert (home / "c2pa-dev" / "signer-key.pem").stat().st_mode & 0o077 == 0  # private
    assert prov.signing_identity().chain_pem == identity.chain_pem  # made on first use only
    out = sign(clip, tmp_path / "signed.mp4", identity)
    frames, fps, tags = read_video(out)  # still a normal MP4 with its tags
    assert frames.shape == (9, 64, 64, 3) and tags["prompt"] == "a red circle"

    report = prov.read_provenance(out)
    assert report.found and report.intact and report.trusted is None and report.development
    assert report.created["action"] == "c2pa.created"
    assert report.created["digitalSourceType"] == prov.TRAINED_ALGORITHMIC_MEDIA
    assert report.generation["model"] == "kinema-tiny" and report.generation["seed"] == 4
    assert (
        report.generation["prompt"] == "a red circle"
        and report.generation["watermark"] == "0a1b2c3d"
    )

    trusted = prov.read_provenance(out, home / "c2pa-dev" / "root.pem")
    assert trusted.trusted and trusted.state == "Trusted"
    other = tmp_path / "other"
    other.mkdir()
    prov.make_dev_chain(other)  # somebody else's root
    assert prov.read_provenance(out, other / "root.pem").trusted is False

    data = bytearray(out.read_bytes())
    data[data.find(b"mdat") + 200] ^= 0xFF  # one byte of video changed
    tampered = tmp_path / "tampered.mp4"
    tampered.write_bytes(bytes(data))
    bad = prov.read_provenance(tampered, home / "c2pa-dev" / "root.pem")
    assert bad.found and not bad.intact and not bad.trusted
    assert any("mismatch" in f for f in bad.failures)
    assert not prov.read_provenance(clip).found  # unsigned


def test_user_credentials_and_hashed_prompt(home, clip, tmp_path, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir()
    prov.make_dev_chain(mine)  # stands in for a real CA-issued chain
    monkeypatch.setenv("KINEMA_C2PA_CERT", str(mine / "signer.pem"))
    monkeypatch.setenv("KINEMA_C2PA_KEY", str(mine / "signer-key.pem"))
    identity = prov.signing_identity()
    assert not identity.development and not (home / "c2pa-dev").exists()
    out = sign(clip, tmp_path / "hashed.mp4", identity, prompt="hash")
    report = prov.read_provenance(out, mine / "root.pem")
    assert report.trusted and report.development is False
    assert "prompt" not in report.generation and "expanded_prompt" not in report.generation
    assert report.generation["prompt_sha256"] == prov.prompt_hash("a red circle")


@pytest.mark.parametrize(
    "cert, key, message",
    [
        ("missing.pem", "missing-key.pem", "cannot read the C2PA certificate chain missing.pem"),
        ("signer.pem", None, "needs both"),
        ("signer.pem", "root.pem", "cannot read the C2PA private key"),
    ],
)
def test_bad_credentials_are_one_clear_error(home, tmp_path, monkeypatch, cert, key, message):
    monkeypatch.chdir(tmp_path)
    prov.make_dev_chain(tmp_path)
    with pytest.raises(prov.ProvenanceError, match=message):
        prov.signing_identity(cert, key)


def test_bad_trust_anchor_file(home, clip, tmp_path):
    (tmp_path / "notes.txt").write_text("not a certificate")
    with pytest.raises(prov.ProvenanceError, match="no PEM certificate"):
        prov.read_provenance(clip, tmp_path / "notes.txt")
    with pytest.raises(prov.ProvenanceError, match="cannot read the trust anchors"):
        prov.read_provenance(clip, tmp_path / "nope.pem")

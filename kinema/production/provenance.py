"""C2PA provenance: a signed manifest in the MP4 that says how the clip was made, and reading it
back.

The manifest (c2pa-python, which embeds it in the MP4 and hashes the file's boxes) holds:
- `c2pa.actions.v2`: `c2pa.created` with the IPTC digital source type trainedAlgorithmicMedia,
  kinema and the model as the software agent, then `c2pa.resized` when the frames were upscaled
  and `c2pa.watermarked.unbound` when they carry kinema's invisible watermark (unbound: no C2PA
  soft-binding assertion points at it, as its algorithm is not in the C2PA registry);
- `org.kinema.generation`: model, seed, sampler and production settings, the generation id,
  the watermark payload, and the prompt in clear or as its SHA-256 (`prompt="hash"`);
- `org.kinema.signer`: whether the signature comes from a local development certificate.

Signing credentials: a PEM certificate chain (signing certificate first) and its private key,
given as paths or by KINEMA_C2PA_CERT and KINEMA_C2PA_KEY. Without them kinema makes, on first
use, a local development chain under $KINEMA_HOME (default ~/.config/kinema, or
$XDG_CONFIG_HOME/kinema): a root CA (`c2pa-dev/root.pem`) and an ES256 signing certificate with
the emailProtection extended key usage that C2PA validators accept. A clip signed with it
verifies as intact, but nobody trusts that root unless told to (`kinema verify --trust
root.pem`), and the manifest says it is a development signature.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from kinema.pipeline.text_to_video import GenerationError

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
DEV_FOLDER = "c2pa-dev"
DEV_ORGANISATION = "kinema local development (not for distribution)"


class ProvenanceError(GenerationError):
    """Signing or reading a C2PA manifest failed, or the signing credentials are unusable."""


def kinema_home() -> Path:
    """$KINEMA_HOME, else $XDG_CONFIG_HOME/kinema, else ~/.config/kinema."""
    if os.environ.get("KINEMA_HOME"):
        return Path(os.environ["KINEMA_HOME"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "kinema"


@dataclass(frozen=True)
class SigningIdentity:
    chain_pem: bytes  # signing certificate first, then intermediates
    key_pem: bytes
    alg: str  # es256, es384, ps256, ed25519, ...
    development: bool
    source: str  # where the credentials came from, for messages


def _c2pa():
    try:
        import c2pa
    except ImportError:
        raise ProvenanceError(
            "C2PA signing needs c2pa-python: pip install c2pa-python (or use --no-c2pa)"
        ) from None
    return c2pa


# ----------------------------------------------------------------------------- credentials


def _name(common_name: str):
    from cryptography.x509 import Name, NameAttribute
    from cryptography.x509.oid import NameOID

    return Name([NameAttribute(NameOID.COMMON_NAME, common_name),
                 NameAttribute(NameOID.ORGANIZATION_NAME, DEV_ORGANISATION)])  # fmt: skip


def _key_usage(**on):
    from cryptography import x509

    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")  # fmt: skip
    return x509.KeyUsage(**{n: on.get(n, False) for n in names})


def make_dev_chain(folder: Path) -> None:
    """Write root.pem, root-key.pem, signer.pem (signing certificate + root) and signer-key.pem:
    a root CA and an ES256 signing certificate for C2PA (digitalSignature, emailProtection)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    now = datetime.datetime.now(datetime.UTC)
    root_key, signer_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    root_name = _name("kinema development root CA")
    root = (
        x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
        .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )  # fmt: skip
    signer = (
        x509.CertificateBuilder().subject_name(_name("kinema development signer"))
        .issuer_name(root_name).public_key(signer_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=730))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(signer_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )  # fmt: skip

    def pem(cert) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    def key(k) -> bytes:
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())  # fmt: skip

    (folder / "root.pem").write_bytes(pem(root))
    (folder / "signer.pem").write_bytes(pem(signer) + pem(root))
    for name, k in (("root-key.pem", root_key), ("signer-key.pem", signer_key)):
        path = folder / name
        path.write_bytes(key(k))
        path.chmod(0o600)
    (folder / "README.txt").write_text(
        "kinema's local development C2PA certificates, made on first use.\n"
        "Clips signed with signer.pem verify as intact; trust them with\n"
        f"  kinema verify CLIP --trust {folder / 'root.pem'}\n"
        "Configure real credentials with KINEMA_C2PA_CERT and KINEMA_C2PA_KEY.\n"
    )


def _expired(chain_pem: bytes) -> bool:
    from cryptography import x509

    cert = x509.load_pem_x509_certificates(chain_pem)[0]
    return cert.not_valid_after_utc <= datetime.datetime.now(datetime.UTC) + datetime.timedelta(
        days=1
    )


def dev_identity(home: Path | None = None) -> SigningIdentity:
    """The local development chain, made on first use (safely under concurrent first uses)."""
    folder = (home or kinema_home()) / DEV_FOLDER
    if not (folder / "signer.pem").is_file() or _expired((folder / "signer.pem").read_bytes()):
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".c2pa-dev.", dir=folder.parent))
        try:
            make_dev_chain(tmp)
            if folder.exists() and _expired((folder / "signer.pem").read_bytes()):
                shutil.rmtree(folder, ignore_errors=True)
            with contextlib.suppress(OSError):  # another process got there first: use theirs
                os.rename(tmp, folder)  # atomic
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return SigningIdentity((folder / "signer.pem").read_bytes(), (folder / "signer-key.pem").read_bytes(),
                           "es256", True, str(folder))  # fmt: skip


def _algorithm(key_pem: bytes, source: str) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as e:
        raise ProvenanceError(f"cannot read the C2PA private key {source}: {e}") from None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        algs = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if key.curve.name not in algs:
            raise ProvenanceError(f"C2PA key {source}: curve {key.curve.name} is not supported")
        return algs[key.curve.name]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    raise ProvenanceError(f"C2PA key {source}: unsupported key type {type(key).__name__}")


def signing_identity(
    cert: str | Path | None = None, key: str | Path | None = None
) -> SigningIdentity:
    """Credentials from the arguments, else KINEMA_C2PA_CERT/KINEMA_C2PA_KEY, else the local
    development chain."""
    cert = cert or os.environ.get("KINEMA_C2PA_CERT") or None
    key = key or os.environ.get("KINEMA_C2PA_KEY") or None
    if cert is None and key is None:
        return dev_identity()
    if cert is None or key is None:
        raise ProvenanceError("C2PA signing needs both a certificate chain and its private key")
    texts = []
    for what, path in (("certificate chain", cert), ("private key", key)):
        try:
            texts.append(Path(path).read_bytes())
        except OSError as e:
            raise ProvenanceError(
                f"cannot read the C2PA {what} {path}: {e.strerror or e}"
            ) from None
    return SigningIdentity(texts[0], texts[1], _algorithm(texts[1], str(key)), False, str(cert))


# ----------------------------------------------------------------------------- signing


def prompt_hash(prompt: str) -> str:
    return hashlib.sha256(prompt.encode()).hexdigest()


_SETTINGS = ("seed", "steps", "guidance", "shift", "solver", "eta", "eta_from", "fps", "width",
             "height", "num_frames", "negative_prompt", "motion", "mode", "base_fps",
             "base_width", "base_height")  # fmt: skip


def build_manifest(metadata: dict, title: str, development: bool, prompt: str = "text") -> dict:
    """The manifest definition for a clip with kinema's metadata (see the module doc)."""
    from kinema import __version__

    if prompt not in ("text", "hash"):
        raise ProvenanceError(f"prompt in provenance must be 'text' or 'hash', got {prompt!r}")
    model = metadata.get("model", "unknown")
    generation = {k: metadata[k] for k in _SETTINGS if metadata.get(k) is not None}
    for key in ("prompt", "expanded_prompt"):
        if metadata.get(key):
            if prompt == "text":
                generation[key] = metadata[key]
            else:
                generation[f"{key}_sha256"] = prompt_hash(metadata[key])
    production = metadata.get("production", {})
    generation.update(model=model, generation_id=metadata.get("generation_id"),
                      interpolator=production.get("interpolator"), upscaler=production.get("upscaler"),
                      watermark=(metadata.get("watermark") or {}).get("payload_hex"))  # fmt: skip
    actions = [{
        "action": "c2pa.created",
        "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
        "softwareAgent": {"name": "kinema", "version": __version__},
        "parameters": {"model": model, "seed": metadata.get("seed")},
    }]  # fmt: skip
    if production.get("upscaler"):
        actions.append(
            {"action": "c2pa.resized", "parameters": {"upscaler": production["upscaler"]}}
        )
    if metadata.get("watermark"):
        actions.append({"action": "c2pa.watermarked.unbound",
                        "parameters": {"method": "kinema dwtDctSvd", "payload": metadata["watermark"]["payload_hex"]}})  # fmt: skip
    signer_note = {"development_certificate": development}
    if development:
        signer_note["note"] = (
            "signed with kinema's local development certificate: not a trusted identity"
        )
    return {
        "claim_generator_info": [{"name": "kinema", "version": __version__}],
        "title": title,
        "format": "video/mp4",
        "assertions": [
            {"label": "c2pa.actions.v2", "data": {"actions": actions}},
            {"label": "org.kinema.generation", "data": _jsonable(generation)},
            {"label": "org.kinema.signer", "data": signer_note},
        ],
    }


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


def sign_mp4(source: Path, destination: Path, manifest: dict, identity: SigningIdentity) -> None:
    """Embed and sign the manifest: source MP4 -> destination MP4 (not the same file)."""
    c2pa = _c2pa()
    try:
        info = c2pa.C2paSignerInfo(identity.alg, identity.chain_pem, identity.key_pem, None)
        with (
            c2pa.Signer.from_info(info) as signer,
            c2pa.Builder(manifest) as builder,
            open(source, "rb") as src,
            open(destination, "w+b") as dst,
        ):
            builder.sign(signer, "video/mp4", src, dst)
    except c2pa.C2paError as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ProvenanceError(f"C2PA signing with {identity.source} failed: {reason}") from None


# ----------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class ProvenanceReport:
    found: bool
    state: str | None = None  # the SDK's: Invalid, Valid or Trusted
    intact: bool = False  # signature and hashes check out (trust aside)
    trusted: bool | None = None  # None: no trust anchor given
    failures: tuple[str, ...] = ()  # validation failure codes and explanations
    signer: str | None = None
    development: bool | None = None
    created: dict = field(default_factory=dict)  # the c2pa.created action
    generation: dict = field(default_factory=dict)  # org.kinema.generation

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def _context(c2pa, trust: Path | None):
    if trust is None:
        return None
    try:
        anchors = Path(trust).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ProvenanceError(
            f"cannot read the trust anchors {trust}: {getattr(e, 'strerror', None) or e}"
        ) from None
    if "-----BEGIN CERTIFICATE-----" not in anchors:
        raise ProvenanceError(f"trust anchors {trust} hold no PEM certificate")
    return c2pa.Context.from_dict(
        {"trust": {"trust_anchors": anchors}, "verify": {"verify_trust": True}}
    )


def read_provenance(path: str | Path, trust: str | Path | None = None) -> ProvenanceReport:
    """The C2PA manifest of a file, its validity, and trust against the given root(s)."""
    c2pa = _c2pa()
    context = _context(c2pa, Path(trust) if trust else None)
    try:
        with open(path, "rb") as stream:
            reader = c2pa.Reader.try_create("video/mp4", stream, None, context) if context else \
                c2pa.Reader.try_create("video/mp4", stream)  # fmt: skip
            if reader is None:
                return ProvenanceReport(found=False)
            with reader:
                state = reader.get_validation_state()
                results = (reader.get_validation_results() or {}).get("activeManifest") or {}
                manifest = reader.get_active_manifest() or {}
    except c2pa.C2paError as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return ProvenanceReport(
            found=True, state="Invalid", failures=(f"unreadable manifest: {reason}",)
        )
    failures = tuple(
        f"{f.get('code')}: {f.get('explanation', '')}" for f in results.get("failure", [])
    )
    integrity = [f for f in failures if not f.startswith("signingCredential.untrusted")]
    assertions = {a.get("label"): a.get("data", {}) for a in manifest.get("assertions", [])}
    created = next((a for a in assertions.get("c2pa.actions.v2", {}).get("actions", [])
                    if a.get("action") == "c2pa.created"), {})  # fmt: skip
    signature = manifest.get("signature_info", {})
    signer = signature.get("common_name") or signature.get("issuer")
    return ProvenanceReport(
        found=True, state=state, intact=not integrity,
        trusted=(state == "Trusted") if trust else None, failures=failures,
        signer=signer, development=assertions.get("org.kinema.signer", {}).get("development_certificate"),
        created=created, generation=assertions.get("org.kinema.generation", {}),
    )  # fmt: skip

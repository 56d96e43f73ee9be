"""Wan2.1 image-to-video (I2V) and first-last-frame (FLF2V) in kinema's own classes against
diffusers' WanImageToVideoPipeline, on tiny random models built here (nothing is downloaded): a
whole sampling run gives its frames from the same noise and image; the CLIP preprocessing equals
transformers'; an I2V folder loads through kinema.load (either layout), generates from the
Python API and the CLI, and refuses to run without its image, in the API, the CLI and the
server's request validation, which takes an FLF2V model's two images (input_reference and
last_reference)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline  # noqa: E402
from PIL import Image  # noqa: E402
from test_wan_parity import (  # noqa: E402
    NEGATIVE,
    PROMPT,
    WORDS,
    kinema_schedule,
    max_diff,
    tiny_transformer,
    tiny_vae,
    write_original_layout,
)
from transformers import (  # noqa: E402
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
    UMT5Config,
    UMT5EncoderModel,
)

import kinema  # noqa: E402
from kinema.pipeline.conditioning import ConditioningError, FrameConditions  # noqa: E402
from kinema.pipeline.image_encoder import ClipPreprocess  # noqa: E402
from kinema.pipeline.text_to_video import GenerationError  # noqa: E402

try:
    from transformers import CLIPImageProcessorPil as ImageProcessor
except ImportError:
    from transformers import CLIPImageProcessor as ImageProcessor

torch.set_num_threads(1)

# CLIP at 32 pixels in patches of 8: 17 tokens of 32; 16 heads as Wan's ViT-H/14 (for its layout)
CLIP = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=3, num_attention_heads=16,
            image_size=32, patch_size=8, projection_dim=8, hidden_act="gelu")  # fmt: skip
CLIP_TOKENS = 17
SIZE = dict(width=32, height=48, num_frames=9)


def picture(seed: int, height: int = 48, width: int = 32) -> np.ndarray:
    """A smooth random picture (H, W, 3) uint8."""
    coarse = torch.rand(1, 3, 4, 3, generator=torch.Generator().manual_seed(seed))
    fine = torch.nn.functional.interpolate(coarse, (height, width), mode="bilinear")
    return (fine[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()


def i2v_pipeline(last_frame: bool) -> WanImageToVideoPipeline:
    torch.manual_seed(11)
    text_encoder = UMT5EncoderModel(
        UMT5Config(vocab_size=32, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
                   relative_attention_num_buckets=8, feed_forward_proj="gated-gelu")
    ).eval()  # fmt: skip
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**CLIP)).eval()
    positions = dict(pos_embed_seq_len=2 * CLIP_TOKENS) if last_frame else {}
    transformer = tiny_transformer(12, in_channels=36, image_dim=32, added_kv_proj_dim=32,
                                   **positions)  # fmt: skip
    if last_frame:  # diffusers starts the learned positions at zero: make them count
        torch.nn.init.normal_(transformer.condition_embedder.image_embedder.pos_embed)
    from diffusers_tiny import tokenizer

    return WanImageToVideoPipeline(
        tokenizer=tokenizer(WORDS), text_encoder=text_encoder, vae=tiny_vae(13),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), transformer=transformer,
        image_encoder=image_encoder,
        # the shortest side to 40, then the middle 32 x 32: CLIP's resize and crop both act
        image_processor=ImageProcessor(size={"shortest_edge": 40},
                                       crop_size={"height": 32, "width": 32}),
    )  # fmt: skip


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """{"i2v": (folder, pipeline), "flf2v": ...}: tiny random pipelines, saved in the diffusers
    layout."""
    out = {}
    for kind in ("i2v", "flf2v"):
        pipe = i2v_pipeline(last_frame=kind == "flf2v")
        folder = tmp_path_factory.mktemp(kind) / f"Wan2.1-{kind.upper()}-tiny-Diffusers"
        pipe.save_pretrained(folder)
        out[kind] = folder, pipe
    return out


def test_clip_preprocessing_matches_transformers(folders):
    folder, pipe = folders["i2v"]
    ours = ClipPreprocess.from_json(folder / "image_processor" / "preprocessor_config.json")
    for height, width in ((48, 32), (30, 50), (40, 40)):
        image = picture(height + width, height, width)
        expected = pipe.image_processor(images=Image.fromarray(image), return_tensors="pt")
        assert max_diff(ours(image), expected.pixel_values[0]) <= 1e-6


@pytest.mark.parametrize("kind", ["i2v", "flf2v"])
@torch.inference_mode()
def test_sampling_run_matches_wan_image_to_video_pipeline(folders, kind, monkeypatch):
    from diffusers.pipelines.wan import pipeline_wan_i2v

    # it calls ftfy (not installed) unguarded, where WanPipeline leaves the text as it is
    monkeypatch.setattr(
        pipeline_wan_i2v, "ftfy", SimpleNamespace(fix_text=lambda t: t), raising=False
    )
    folder, pipe = folders[kind]
    t2v = kinema.load(folder).t2v
    assert t2v.wan_images == (1 if kind == "i2v" else 2)
    s = t2v.settings(**SIZE, steps=3, guidance=5.0, shift=3.0, negative_prompt=NEGATIVE, seed=7)
    first, last = picture(1), picture(2)
    images = ((0, first),) if kind == "i2v" else ((0, first), (SIZE["num_frames"] - 1, last))
    image = t2v.image_condition(FrameConditions(images=images), s)
    assert image.channels.shape == (1, 20, 3, 6, 4)  # the mask (4) and the image's latents (16)
    noise = t2v.prepare_latents(s)  # (1, 16, 3, 6, 4)
    cond, uncond = t2v.encode_prompt(PROMPT, s.negative_prompt)
    latents = t2v.sample(noise, cond, uncond, s, image=image)
    frames = (t2v.vae.decode_chunked(t2v.vae.from_model(latents)) + 1) / 2  # (1, 3, T, H, W)

    kinema_schedule(pipe.scheduler)
    last_image = {"last_image": Image.fromarray(last)} if kind == "flf2v" else {}
    expected = pipe(
        image=Image.fromarray(first), prompt=PROMPT, negative_prompt=s.negative_prompt,
        height=SIZE["height"], width=SIZE["width"], num_frames=SIZE["num_frames"],
        num_inference_steps=3, guidance_scale=5.0, latents=noise.clone(), output_type="pt",
        **last_image,
    ).frames  # (1, T, 3, H, W) in [0, 1]  # fmt: skip
    assert frames.std() > 0.05  # a picture, not a constant
    diff = max_diff(frames.permute(0, 2, 1, 3, 4), expected)
    print(f"{kind}: max abs diff of the frames {diff:.2e}")
    assert diff <= 1e-3
    # generate() makes the same clip, as uint8
    uint8, _ = t2v.generate(PROMPT, s, conditions=FrameConditions(images=images))
    reference = expected[0].permute(0, 2, 3, 1).numpy() * 255
    assert np.abs(uint8.astype(np.float32) - reference).max() <= 1.0
    # and the image matters: another one gives another clip
    other = t2v.image_condition(FrameConditions(images=((0, 255 - first), *images[1:])), s)
    moved = t2v.sample(noise, cond, uncond, s, image=other)
    assert max_diff(moved, latents) > 1e-2


def test_api_and_cli_generate_from_an_i2v_folder(folders, tmp_path):
    from cli_helpers import run_kinema

    from kinema.io.images import save_png
    from kinema.io.video import read_video

    folder, _ = folders["i2v"]
    pipe = kinema.load(folder)
    photo = picture(3, 40, 40)  # square: cropped to the clip's 32x48
    video = pipe(PROMPT, image=photo, width=32, height=48, seconds=1, steps=2)
    assert video.frames.shape == (9, 48, 32, 3) and video.metadata["mode"] == "image-to-video"
    assert any("cropped" in note for note in video.metadata["notes"])
    path = save_png(tmp_path / "first.png", photo)
    again = pipe(PROMPT, image=str(path), width=32, height=48, seconds=1, steps=2)
    assert np.array_equal(again.frames, video.frames)  # a path is the same image
    longer = pipe(PROMPT, image=photo, width=32, height=32, num_frames=37, steps=1)
    assert len(longer.frames) == 37 and longer.metadata["mode"] == "image-to-video"  # no chain

    out = tmp_path / "i2v.mp4"
    result = run_kinema("generate", PROMPT, "--image", str(path), "--model", str(folder),
                        "--steps", "2", "--size", "32x32", "--seconds", "1", "--no-c2pa",
                        "--also", "", "-o", str(out), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    frames, fps, _ = read_video(out)
    assert frames.shape == (9, 32, 32, 3) and fps == 8
    assert "image-to-video" in result.stdout


def test_flf2v_generates_from_first_and_last_frames(folders):
    folder, _ = folders["flf2v"]
    pipe = kinema.load(folder)
    video = pipe(PROMPT, image=picture(4), last_image=picture(5), seconds=1, width=32, height=48,
                 steps=2)  # fmt: skip
    assert video.frames.shape == (9, 48, 32, 3) and video.metadata["pinned_frames"] == [0, 8]
    # guidance reuse: the conditional branch alone gets its own image tokens and channels
    cached = pipe(PROMPT, image=picture(4), last_image=picture(5), seconds=1, width=32,
                  height=48, steps=8, cache_guidance_every=2)  # fmt: skip
    assert cached.metadata["step_cache"]["guidance_reused"] == 3  # steps 2, 4, 6 after 2 full
    with pytest.raises(ConditioningError, match="a first and a last frame"):
        pipe(PROMPT, image=picture(4), seconds=1, width=32, height=48, steps=1)


def test_a_wan_i2v_model_refuses_to_run_without_its_image(folders, tmp_path):
    from cli_helpers import assert_user_error, run_kinema

    folder, _ = folders["i2v"]
    pipe = kinema.load(folder)
    kw = dict(seconds=1, width=32, height=32, steps=1)
    with pytest.raises(ConditioningError, match="needs the first frame"):
        pipe(PROMPT, **kw)
    with pytest.raises(ConditioningError, match="first frame .* only"):
        pipe(PROMPT, image=picture(1, 32, 32), keyframes={0.5: picture(2, 32, 32)}, **kw)
    with pytest.raises(ConditioningError, match="leave it at 0"):
        pipe(PROMPT, image=picture(1, 32, 32), image_noise=0.1, **kw)
    with pytest.raises(GenerationError, match="cannot extend"):
        pipe.extend(np.zeros((5, 32, 32, 3), np.uint8), PROMPT, seconds=0.5)
    with pytest.raises(GenerationError, match=r"one window \(81 frames, 10 s at 8 fps\)"):
        pipe(PROMPT, image=picture(1, 32, 32), num_frames=85, width=32, height=32, steps=1)

    out = tmp_path / "none.mp4"
    result = run_kinema("generate", PROMPT, "--model", str(folder), "--steps", "1", "--size",
                        "32x32", "--seconds", "1", "--no-c2pa", "-o", str(out), cwd=tmp_path)  # fmt: skip
    assert_user_error(result, "image-to-video", "--image")
    assert not any(tmp_path.glob("none*"))  # no partial output


def test_the_server_knows_a_wan_i2v_model_needs_its_image(folders):
    """Request validation reads from the folder's config, without loading weights, that an I2V
    model needs its first frame (and takes no last one) and an FLF2V one a last frame too, and
    refuses what the worker would."""
    pytest.importorskip("fastapi")
    import base64
    import io

    from kinema.serve.config import Defaults, Limits
    from kinema.serve.errors import ApiError
    from kinema.serve.schemas import ExtendBody
    from kinema.serve.validation import ModelInfo, extension_spec, job_spec

    def png_of(image: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        return buffer.getvalue()

    png, last_png = png_of(picture(1, 32, 32)), png_of(picture(2, 32, 32))
    start = {"image_url": "data:image/png;base64," + base64.b64encode(png).decode()}
    end = {"image_url": "data:image/png;base64," + base64.b64encode(last_png).decode()}

    def spec(info, upload=None, last_upload=None, **fields):
        fields = {"prompt": PROMPT, "size": "32x32", "seconds": "1", **fields}
        return job_spec(fields, info, Limits(), Defaults(), upload, last_upload)

    i2v = ModelInfo.read(str(folders["i2v"][0]))
    assert (i2v.images_needed, i2v.takes_known_frames, i2v.base.max_frames) == (1, False, 81)
    with pytest.raises(ApiError) as refused:
        spec(i2v)
    error = refused.value
    assert (error.status, error.param, error.code) == (400, "input_reference", "invalid_value")
    assert "image-to-video model: it needs input_reference, the first frame" in error.message
    for made in (spec(i2v, input_reference=start), spec(i2v, upload=png)):
        assert made.params["input_reference"]["size"] == "32x32" and made.inputs
    with pytest.raises(ApiError, match="leave image_noise out or at 0"):
        spec(i2v, input_reference=start, image_noise=0.1)
    with pytest.raises(ApiError, match="takes the first frame only") as refused:
        spec(i2v, input_reference=start, last_reference=end)
    assert (refused.value.param, refused.value.code) == ("last_reference", "unsupported")
    with pytest.raises(ApiError, match=r"one window \(81 frames, 5 s at 16 fps\)"):
        spec(i2v, input_reference=start, seconds="6", fps=16)
    body = ExtendBody(prompt=PROMPT, seconds="1", video={"id": "video_abc"})
    with pytest.raises(ApiError, match="extending a video is not supported"):
        extension_spec(body, "video_abc", {}, i2v, Limits(), Defaults())

    flf2v = ModelInfo.read(str(folders["flf2v"][0]))
    assert flf2v.images_needed == 2
    for made in (spec(flf2v, input_reference=start, last_reference=end),
                 spec(flf2v, upload=png, last_upload=last_png)):  # fmt: skip
        assert made.inputs == {"input.png": png, "last.png": last_png}
        assert made.params["last_reference"] == {
            "file": "last.png", "size": "32x32", "fit": "crop", "image_noise": 0.0,
        }  # fmt: skip
    for given, missing in (({"input_reference": start}, "last_reference"),
                           ({"last_reference": end}, "input_reference"),
                           ({}, "input_reference and last_reference")):  # fmt: skip
        with pytest.raises(ApiError, match=f"first-last-frame .* missing: {missing}$") as why:
            spec(flf2v, **given)
        assert (why.value.param, why.value.code) == (missing.split()[0], "invalid_value")
    with pytest.raises(ApiError, match="leave image_noise out or at 0"):
        spec(flf2v, input_reference=start, last_reference=end, image_noise=0.1)


def test_a_served_flf2v_job_runs_from_both_stored_images(folders, tmp_path):
    """What validation stores for an FLF2V request (both images as files, their entries in the
    params) is what a worker needs: the clip is made with the images pinned at its ends."""
    pytest.importorskip("sqlalchemy")
    import io
    import json

    from kinema.io.video import read_video
    from kinema.serve.config import Defaults, Limits
    from kinema.serve.jobs import COMPLETED, JobStore
    from kinema.serve.storage import Storage
    from kinema.serve.validation import ModelInfo, job_spec
    from kinema.serve.worker import Worker

    folder = str(folders["flf2v"][0])
    pngs = []
    for seed in (1, 2):
        buffer = io.BytesIO()
        Image.fromarray(picture(seed, 32, 32)).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    fields = {"prompt": PROMPT, "size": "32x32", "seconds": "1", "fps": 16, "steps": 2, "seed": 0}
    spec = job_spec(fields, ModelInfo.read(folder), Limits(), Defaults(), *pngs)
    store, storage = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}"), Storage(tmp_path)
    job = store.create("alice", folder, spec.prompt, spec.params)
    for name, data in spec.inputs.items():
        storage.put_input(job.id, name, data)
    Worker(store, tmp_path, model=folder, pipeline=kinema.load(folder), c2pa=False).run(max_jobs=1)
    done = store.get(job.id)
    assert done.status == COMPLETED, done.error_message
    frames, fps, meta = read_video(storage.path(job.id, done.output, "video"))
    assert frames.shape == (17, 32, 32, 3) and fps == 16
    assert json.loads(meta["pinned_frames"]) == [0, 16]  # the first and the last frame
    store.close()


@torch.inference_mode()
def test_original_layout_converts_wans_clip(folders, tmp_path):
    from kinema.checkpoint import CheckpointError
    from kinema.convert.folders import WAN_CLIP_FILE
    from kinema.convert.wan_clip import clip_vision_to_wan

    folder, pipe = folders["i2v"]
    original = tmp_path / "Wan2.1-I2V-tiny"
    write_original_layout(original, folder)
    with pytest.raises(CheckpointError, match=WAN_CLIP_FILE):
        kinema.load(original)
    state = clip_vision_to_wan(pipe.image_encoder)
    # Wan's file also holds the projection head and the text tower, which I2V does not use
    state |= {"visual.head": torch.randn(32, 8), "textual.token_embedding.weight": torch.randn(9, 4),
              "log_scale": torch.tensor(4.6)}  # fmt: skip
    torch.save(state, original / WAN_CLIP_FILE)
    loaded = kinema.load(original).t2v
    assert loaded.wan_images == 1 and loaded.image_encoder.tokens == CLIP_TOKENS
    pixels = torch.randn(2, 3, 32, 32)
    ours = loaded.image_encoder.model(pixel_values=pixels, output_hidden_states=True)
    theirs = pipe.image_encoder(pixel_values=pixels, output_hidden_states=True)
    assert max_diff(ours.hidden_states[-2], theirs.hidden_states[-2]) <= 1e-5
    # it generates (the transformer's shards were written in bfloat16)
    s = loaded.settings(width=32, height=32, num_frames=5, steps=1)
    frames, _ = loaded.generate(
        PROMPT, s, conditions=FrameConditions(images=((0, picture(6, 32, 32)),))
    )
    assert frames.shape == (5, 32, 32, 3)


def test_plan_counts_the_image_encoder_and_the_image_encoding(folders, tmp_path):
    import dataclasses

    from cli_helpers import run_kinema

    from kinema.convert.folders import wan_configs
    from kinema.pipeline import plan as cost
    from kinema.pipeline.text_to_video import GenerationSettings

    folder, _ = folders["i2v"]
    dit_cfg, vae_cfg, _ = wan_configs(folder)
    s = GenerationSettings(width=32, height=48, num_frames=17, steps=4, guidance=5.0)
    i2v = cost.plan_cost(dit_cfg, vae_cfg, s)
    t2v = cost.plan_cost(dataclasses.replace(dit_cfg, in_channels=16, image_dim=None), vae_cfg, s)
    assert i2v.image_encoder_flops == cost.WAN21_CLIP.flops(1) > 0
    assert i2v.largest.vae_flops > t2v.largest.vae_flops  # the conditioning clip is encoded
    assert i2v.largest.dit_flops > t2v.largest.dit_flops  # 20 more channels, 257 image tokens
    assert i2v.weight_bytes - t2v.weight_bytes > cost.WAN21_CLIP.parameter_bytes
    with pytest.raises(GenerationError, match="one window"):
        cost.plan_cost(dit_cfg, vae_cfg, s, chained_window_frames=9)

    planned = run_kinema("plan", "--model", str(folder), "--size", "32x48", "--seconds", "1",
                         "--fps", "16", cwd=tmp_path)  # fmt: skip
    assert planned.returncode == 0, planned.stderr[-1500:]
    text = " ".join(planned.stdout.split())
    assert "17 frames" in text and "CLIP image encoder" in text

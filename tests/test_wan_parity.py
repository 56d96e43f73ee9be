"""Wan2.1 in kinema's own classes against diffusers' implementation, on tiny random models built
here (nothing is downloaded): the transformer and the VAE give the same numbers from the same
weights, a whole sampling run gives WanPipeline's frames from the same noise, Wan folders in
the diffusers and the original layout load to the same model, and `kinema generate` runs one.
A Wan T2V clip is one window of up to 81 frames: longer ones are refused, never chained."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

pytest.importorskip("diffusers")
from diffusers import (  # noqa: E402
    AutoencoderKLWan,
    FlowMatchEulerDiscreteScheduler,
    WanPipeline,
    WanTransformer3DModel,
)
from diffusers_tiny import tokenizer  # noqa: E402
from transformers import UMT5Config, UMT5EncoderModel  # noqa: E402

from kinema.convert.folders import load_wan_dit, load_wan_vae, model_layout  # noqa: E402
from kinema.convert.wan import (  # noqa: E402
    dit_config_from_diffusers,
    dit_key_to_diffusers,
    rename,
    t5_to_wan,
    vae_config_from_diffusers,
    vae_key_to_diffusers,
    wan_config_from_dit,
)
from kinema.dit.transformer import DiT  # noqa: E402
from kinema.vae.wan_vae import WanVAE  # noqa: E402

torch.set_num_threads(1)

PROMPT = "a red circle moving left on a black background"
NEGATIVE = "blue square"
WORDS = sorted(set(f"{PROMPT} {NEGATIVE} the right".split()))


def tiny_transformer(seed: int = 0, **kw) -> WanTransformer3DModel:
    torch.manual_seed(seed)
    config = dict(num_attention_heads=2, attention_head_dim=16, in_channels=16, out_channels=16,
                  text_dim=32, freq_dim=32, ffn_dim=48, num_layers=2) | kw  # fmt: skip
    return WanTransformer3DModel(**config).eval()


def tiny_vae(seed: int = 0, **kw) -> AutoencoderKLWan:
    torch.manual_seed(seed)
    return AutoencoderKLWan(**(dict(base_dim=8, dim_mult=[1, 2, 4, 4]) | kw)).eval()


def kinema_dit(ref: WanTransformer3DModel) -> DiT:
    dit = DiT(dit_config_from_diffusers(dict(ref.config))).eval()
    dit.load_state_dict(rename(ref.state_dict(), dit.state_dict(), dit_key_to_diffusers, "ref"))
    return dit


def kinema_vae(ref: AutoencoderKLWan) -> WanVAE:
    cfg = vae_config_from_diffusers(dict(ref.config))
    vae = WanVAE(cfg).eval()
    to_diffusers = lambda k: vae_key_to_diffusers(k, cfg)  # noqa: E731
    vae.load_state_dict(rename(ref.state_dict(), vae.state_dict(), to_diffusers, "ref"))
    return vae


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.double() - b.double()).abs().max().item()


# --- transformer ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "head_dim, shape",
    [(16, (1, 4, 4)), (12, (3, 6, 10)), (24, (2, 8, 2))],  # latent (F, H, W): non-square, frames
)
@torch.inference_mode()
def test_transformer_matches_diffusers(head_dim, shape):
    ref = tiny_transformer(attention_head_dim=head_dim)
    dit = kinema_dit(ref)
    x = torch.randn(2, 16, *shape)
    t = torch.tensor([0.93, 0.25])
    # a CFG batch: prompt and negative prompt of different lengths, padded and masked in kinema,
    # zero-padded to 512 tokens in diffusers (as WanPipeline's text encoding does)
    states = torch.randn(2, 7, 32)
    mask = torch.tensor([[True] * 7, [True] * 3 + [False] * 4])
    padded = torch.zeros(2, 512, 32)
    padded[:, :7] = states * mask[..., None]
    expected = ref(x, t * 1000, padded, return_dict=False)[0]
    assert max_diff(dit(x, t, states, mask), expected) <= 1e-4


@torch.inference_mode()
def test_transformer_per_frame_timesteps_match_diffusers_per_token_ones():
    """kinema's one timestep per latent frame = diffusers' per-token timesteps (Wan2.2 TI2V's
    path) repeated over each frame's tokens."""
    ref = tiny_transformer(1)
    dit = kinema_dit(ref)
    x = torch.randn(1, 16, 3, 4, 6)
    t = torch.tensor([[0.0, 0.6, 0.8]])
    per_token = t.repeat_interleave(2 * 3, dim=1) * 1000  # (1, F * H/2 * W/2)
    states = torch.randn(1, 512, 32)
    expected = ref(x, per_token, states, return_dict=False)[0]
    assert max_diff(dit(x, t, states), expected) <= 1e-4


@pytest.mark.parametrize("images", [1, 2])  # I2V: the first frame; FLF2V: first and last
@torch.inference_mode()
def test_i2v_transformer_matches_diffusers(images):
    pos = dict(pos_embed_seq_len=2 * 257) if images == 2 else {}
    ref = tiny_transformer(2, in_channels=36, image_dim=20, added_kv_proj_dim=32, **pos)
    dit = kinema_dit(ref)
    assert dit.cfg.image_dim == 20 and dit.cfg.in_channels == 36
    x, image = torch.randn(1, 36, 2, 4, 4), torch.randn(images, 257, 20)
    states = torch.randn(1, 512, 32)
    expected = ref(x, torch.tensor([500.0]), states, image, return_dict=False)[0]
    assert max_diff(dit(x, torch.tensor([0.5]), states, image_context=image), expected) <= 1e-4


# --- VAE -----------------------------------------------------------------------------------


@pytest.mark.parametrize("num_res_blocks", [1, 2])
@torch.inference_mode()
def test_vae_matches_diffusers(num_res_blocks):
    ref = tiny_vae(num_res_blocks=num_res_blocks)
    vae = kinema_vae(ref)
    video = torch.rand(1, 3, 9, 16, 24) * 2 - 1
    posterior = ref.encode(video).latent_dist
    mean, logvar = vae.encode(video)
    assert max_diff(mean, posterior.mean) <= 1e-4
    assert max_diff(logvar, posterior.logvar) <= 1e-4
    # the streamed encode (frame 0, then groups of 4) equals one pass over the whole clip
    whole = vae.conv1(vae.encoder(video)).chunk(2, dim=1)[0]
    assert max_diff(whole, mean) <= 1e-5

    z = torch.randn(1, 16, 3, 2, 3)
    expected = ref.decode(z).sample  # (1, 3, 9, 16, 24), decoded one latent frame at a time
    assert (expected.abs() < 0.99).float().mean() > 0.2  # not just clamped noise
    assert max_diff(vae.decode(z), expected) <= 1e-4
    for chunk in (1, 2):
        assert max_diff(vae.decode_chunked(z, chunk), expected) <= 1e-4


# --- whole sampling run, and the two folder layouts ---------------------------------------


@pytest.fixture(scope="module")
def diffusers_folder(tmp_path_factory):
    """A tiny random Wan2.1 text-to-video pipeline, saved in the diffusers layout."""
    torch.manual_seed(3)
    config = UMT5Config(vocab_size=32, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
                        relative_attention_num_buckets=8, feed_forward_proj="gated-gelu")  # fmt: skip
    text_encoder = UMT5EncoderModel(config).eval()
    pipe = WanPipeline(
        tokenizer=tokenizer(WORDS),
        text_encoder=text_encoder,
        vae=tiny_vae(4),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        transformer=tiny_transformer(5),
    )
    folder = tmp_path_factory.mktemp("wan") / "Wan2.1-T2V-tiny-Diffusers"
    pipe.save_pretrained(folder)
    return folder, pipe


def kinema_schedule(scheduler: FlowMatchEulerDiscreteScheduler) -> None:
    """Make the scheduler step on kinema's grid, shift(linspace(1, 0, N + 1)): the same times
    for both samplers. (Its default grid ends at shift(1/1000) and shifts twice.)"""

    def set_timesteps(num_inference_steps, device=None):
        sigmas = np.linspace(1.0, 0.0, num_inference_steps + 1)[:-1]
        FlowMatchEulerDiscreteScheduler.set_timesteps(scheduler, sigmas=sigmas, device=device)

    scheduler.set_timesteps = set_timesteps


@torch.inference_mode()
def test_sampling_run_matches_wan_pipeline(diffusers_folder):
    import kinema

    folder, pipe = diffusers_folder
    assert model_layout(folder) == "diffusers"
    loaded = kinema.load(folder)
    # Wan's recommended sampling, with the shift of the folder's scheduler
    assert loaded.t2v.sampler_defaults == {"steps": 50, "guidance": 5.0, "shift": 3.0}
    assert (loaded.base.fps, loaded.base.base_pixels) == (16.0, 832 * 480)  # Wan's 480p at 16 fps
    t2v = loaded.t2v
    s = t2v.settings(width=32, height=48, num_frames=9, steps=3, guidance=5.0, shift=3.0,
                     negative_prompt=NEGATIVE, seed=7)  # fmt: skip
    noise = t2v.prepare_latents(s)  # (1, 16, 3, 6, 4)
    cond, uncond = t2v.encode_prompt(PROMPT, s.negative_prompt)
    latents = t2v.sample(noise, cond, uncond, s)
    frames = (t2v.vae.decode_chunked(t2v.vae.from_model(latents)) + 1) / 2  # (1, 3, T, H, W)

    kinema_schedule(pipe.scheduler)
    expected = pipe(
        PROMPT, negative_prompt=s.negative_prompt, height=48, width=32, num_frames=9,
        num_inference_steps=3, guidance_scale=5.0, latents=noise.clone(), output_type="pt",
    ).frames  # (1, T, 3, H, W) in [0, 1]  # fmt: skip
    assert frames.std() > 0.05  # a picture, not a constant
    assert max_diff(frames.permute(0, 2, 1, 3, 4), expected) <= 1e-3
    # and kinema's own uint8 output is those frames, rounded
    uint8 = t2v.decode(latents).astype(np.float32)
    reference = expected[0].permute(0, 2, 3, 1).numpy() * 255
    assert np.abs(uint8 - reference).max() <= 1.0


def write_original_layout(folder, diffusers_folder) -> None:
    """The same model in the original Wan2.1 repository's layout: kinema's own state dicts are
    Wan's names; the umT5 encoder in Wan's T5 names; the transformer in two shards."""
    from transformers import AutoTokenizer

    from kinema.convert.folders import WAN_T5_FILE, WAN_TOKENIZER_DIR, WAN_VAE_FILE

    dit = load_wan_dit(diffusers_folder)
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(wan_config_from_dit(dit.cfg)))
    state = {k: v.contiguous() for k, v in dit.state_dict().items()}
    keys = sorted(state)
    for i, part in enumerate((keys[: len(keys) // 2], keys[len(keys) // 2 :])):
        name = f"diffusion_pytorch_model-{i + 1:05d}-of-00002.safetensors"
        save_file({k: state[k].to(torch.bfloat16) for k in part}, folder / name)
    torch.save(load_wan_vae(diffusers_folder).state_dict(), folder / WAN_VAE_FILE)
    t5 = UMT5EncoderModel.from_pretrained(diffusers_folder / "text_encoder")
    torch.save(t5_to_wan(t5), folder / WAN_T5_FILE)
    AutoTokenizer.from_pretrained(diffusers_folder / "tokenizer").save_pretrained(
        folder / WAN_TOKENIZER_DIR
    )


@torch.inference_mode()
def test_original_layout_loads_the_same_model(diffusers_folder, tmp_path):
    import kinema

    folder, _ = diffusers_folder
    original = tmp_path / "Wan2.1-T2V-tiny"
    write_original_layout(original, folder)
    assert model_layout(original) == "wan"
    a, b = kinema.load(folder).t2v, kinema.load(original).t2v
    assert a.dit.cfg == b.dit.cfg and a.vae.cfg == b.vae.cfg
    for name, value in a.dit.state_dict().items():  # the shards were written in bfloat16
        assert torch.equal(value.to(torch.bfloat16).float(), b.dit.state_dict()[name]), name
    for name, value in a.vae.state_dict().items():
        assert torch.equal(value, b.vae.state_dict()[name]), name
    states_a, mask_a = a.text_encoder([PROMPT, ""])
    states_b, mask_b = b.text_encoder([PROMPT, ""])
    assert torch.equal(mask_a, mask_b) and max_diff(states_a, states_b) <= 1e-6


def test_cli_generates_from_a_diffusers_folder(diffusers_folder, tmp_path):
    from cli_helpers import run_kinema

    folder, _ = diffusers_folder
    out = tmp_path / "wan.mp4"
    result = run_kinema("generate", PROMPT, "--model", str(folder), "--steps", "2", "--size",
                        "32x32", "--seconds", "1", "--no-c2pa", "--also", "", "-o", str(out),
                        cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    from kinema.io.video import read_video

    frames, fps, _ = read_video(out)
    assert frames.shape == (9, 32, 32, 3) and fps == 8


def test_a_wan_t2v_clip_is_one_window_of_up_to_81_frames(diffusers_folder):
    """Wan2.1 T2V makes 81 frames in one pass and was never trained with known frames: a clip
    past 33 frames (kinema-tiny's window) is still one window, a longer one than 81 is refused
    rather than chained, and so are the modes that need known frames."""
    import kinema
    from kinema.pipeline.text_to_video import GenerationError

    folder, _ = diffusers_folder
    pipe = kinema.load(folder)
    assert (pipe.base.max_frames, pipe.takes_known_frames) == (81, False)
    sampled = []
    sample = pipe.t2v.sample
    pipe.t2v.sample = lambda noise, *a, **kw: sampled.append(noise.shape) or sample(noise, *a, **kw)
    kw = dict(width=32, height=32, steps=1)
    video = pipe(PROMPT, num_frames=41, **kw)
    assert video.frames.shape == (41, 32, 32, 3) and video.metadata["mode"] == "text-to-video"
    assert "window_starts" not in video.metadata and len(sampled) == 1  # one window, no chain
    with pytest.raises(GenerationError, match=r"more than .* in one window \(81 frames, 5 s at 16"):
        pipe(PROMPT, seconds=6, fps=16, **kw)
    with pytest.raises(GenerationError, match="no --hierarchical"):
        pipe(PROMPT, seconds=1, hierarchical=True, **kw)
    still = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(GenerationError, match="takes no images"):
        pipe(PROMPT, seconds=1, image=still, **kw)
    with pytest.raises(GenerationError, match="takes no images"):
        pipe(PROMPT, seconds=1, keyframes={0.5: still}, **kw)
    with pytest.raises(GenerationError, match="cannot extend"):
        pipe.extend(np.zeros((5, 32, 32, 3), np.uint8), PROMPT, seconds=0.5)
    assert len(sampled) == 1  # every refusal came before any work
    assert kinema.load().base.max_frames == 33  # kinema-tiny still chains past 33 (test_modes)


def test_cli_refuses_a_wan_clip_longer_than_its_window(diffusers_folder, tmp_path):
    from cli_helpers import assert_user_error, run_kinema

    folder, _ = diffusers_folder
    out = tmp_path / "long.mp4"
    result = run_kinema("generate", PROMPT, "--model", str(folder), "--steps", "1", "--size",
                        "32x32", "--seconds", "6", "--fps", "16", "--no-c2pa", "-o", str(out),
                        cwd=tmp_path)  # fmt: skip
    assert_user_error(result, "97 frames", "one window (81 frames, 5 s at 16 fps)", "--seconds")
    assert not any(tmp_path.glob("long*"))  # no output, not even a partial one
    # kinema plan: the same limit, and no chain to plan
    planned = run_kinema("plan", "--model", str(folder), "--size", "32x32", "--seconds", "6",
                         "--fps", "16", cwd=tmp_path)  # fmt: skip
    assert_user_error(planned, "one window (81 frames")
    chained = run_kinema("plan", "--model", str(folder), "--size", "32x32", "--seconds", "4",
                         "--fps", "16", "--chained", "1", cwd=tmp_path)  # fmt: skip
    assert_user_error(chained, "--chained", "cannot chain windows")


def test_the_server_checks_requests_against_a_wan_folder(diffusers_folder):
    """A Wan folder as the served model: sizes checked with its 8x VAE and 2x2 patches, a
    request without steps or guidance gets Wan's recommended ones, and a clip longer than its
    one window or with a start image is refused before any job."""
    pytest.importorskip("fastapi")
    from kinema.serve.config import Defaults, Limits
    from kinema.serve.errors import ApiError
    from kinema.serve.validation import ModelInfo, job_spec

    folder, _ = diffusers_folder
    info = ModelInfo.read(str(folder))
    spec = job_spec({"prompt": PROMPT, "size": "32x48", "seconds": "1"}, info, Limits(), Defaults())
    assert (spec.params["steps"], spec.params["guidance"]) == (50, 5.0)
    assert job_spec({"prompt": PROMPT, "steps": 3}, info, Limits(), Defaults()).params["steps"] == 3
    with pytest.raises(ApiError, match="multiple of 16"):
        job_spec({"prompt": PROMPT, "size": "40x48"}, info, Limits(), Defaults())

    # one window of up to 81 frames (5 s at Wan's 16 fps, 10 s at 8), refused past it, not chained
    def spec(**fields):
        fields = {"prompt": PROMPT, "size": "32x32", "fps": 16, **fields}
        return job_spec(fields, info, Limits(), Defaults())

    assert spec(seconds="5").params["num_frames"] == 81
    with pytest.raises(ApiError) as refused:
        spec(seconds="6")
    error = refused.value
    assert (error.status, error.param, error.code) == (400, "seconds", "out_of_range")
    assert "one window (81 frames, 5 s at 16 fps)" in error.message and "chain" in error.message
    # a start image needs known frames, which Wan2.1 T2V was not trained with
    with pytest.raises(ApiError, match="takes no images") as refused:
        spec(input_reference={"image_url": "data:image/png;base64,AAAA"})
    assert (refused.value.param, refused.value.code) == ("input_reference", "unsupported")


def test_plan_costs_a_wan_folder_without_loading_it(diffusers_folder, tmp_path):
    from cli_helpers import run_kinema

    folder, _ = diffusers_folder
    for layout in (folder, tmp_path / "original"):
        if layout != folder:
            write_original_layout(layout, folder)
        planned = run_kinema("plan", "--model", str(layout), "--size", "32x48", "--seconds", "1",
                             "--fps", "16", cwd=tmp_path)  # fmt: skip
        assert planned.returncode == 0, planned.stderr[-1500:]
        text = " ".join(planned.stdout.split())  # the table's title wraps
        assert "17 frames" in text and "50 euler steps" in text  # Wan's recommended steps
        assert "transformer FLOPs per forward" in text
    bad = run_kinema("plan", "--model", str(folder), "--size", "40x48", cwd=tmp_path)
    assert bad.returncode == 2 and "multiple of 16" in bad.stderr

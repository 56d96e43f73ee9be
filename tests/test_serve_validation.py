"""Request checks without a server: uploaded images (type, pixels, that they decode); a last
image (last_reference), taken as the start image is and only beside it; motion strength, taken
by a model with a motion input (micro-conditioning) and refused, naming the model,
by one without it; a worker hands the motion on to the pipeline; a clip longer than the model's
one window, taken by a model that chains windows and refused by one that cannot."""

import base64
import io

import pytest
import torch
from model_helpers import tiny_model
from serve_helpers import IMAGE_PROMPT, PROMPT, world_image

pytest.importorskip("sqlalchemy")

import kinema  # noqa: E402
from kinema.io.video import read_video  # noqa: E402
from kinema.models import MODELS  # noqa: E402
from kinema.serve.config import Defaults, Limits  # noqa: E402
from kinema.serve.errors import ApiError  # noqa: E402
from kinema.serve.jobs import COMPLETED, JobStore  # noqa: E402
from kinema.serve.validation import ModelInfo, check_image, job_spec  # noqa: E402
from kinema.serve.worker import Worker  # noqa: E402


@pytest.fixture(scope="module")
def micro_model(tmp_path_factory):
    """A tiny untrained DiT with motion and fps inputs, next to the shipped VAE."""
    return tiny_model(tmp_path_factory.mktemp("micro"), micro_conditioning=True)


@pytest.fixture(scope="module")
def plain_model(tmp_path_factory):
    """The same without them (kinema-tiny has them now)."""
    return tiny_model(tmp_path_factory.mktemp("plain"), micro_conditioning=False)


def encoded(image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_images_are_checked_before_they_reach_a_worker():
    from PIL import Image

    noise = Image.effect_noise((128, 96), 60).convert("RGB")
    for fmt in ("PNG", "JPEG", "WEBP"):
        assert check_image(encoded(noise, fmt), "input_reference", 10**6) == (fmt, 128, 96)
    cases = [
        (encoded(noise, "GIF"), 400, "invalid_file_type", "PNG, JPEG or WebP"),
        (encoded(noise, "PNG")[:2000], 400, "invalid_file_type", "cannot be decoded"),
        (encoded(Image.new("1", (5000, 5000)), "PNG"), 400, "out_of_range", "pixels"),
        (encoded(noise, "PNG"), 413, "file_too_large", "limit"),
    ]
    for data, status, code, words in cases:
        with pytest.raises(ApiError) as refused:
            check_image(data, "input_reference", 10**6 if status != 413 else 100)
        error = refused.value
        assert (error.status, error.code, error.param) == (status, code, "input_reference")
        assert words in error.message


def spec(info: ModelInfo, **fields):
    return job_spec({"prompt": PROMPT, "steps": 1, "seconds": 1, **fields}, info, Limits(),
                    Defaults())  # fmt: skip


def data_url(data: bytes) -> dict:
    return {"image_url": "data:image/png;base64," + base64.b64encode(data).decode()}


END_PROMPT = "a large blue square moving left on a gray background"


def test_a_last_image_is_taken_as_the_start_image_is_and_only_beside_it():
    """last_reference, an upload or a data URL, gets input_reference's checks and is kept as its
    own file (last.png beside input.png) with an entry of its own in the job's params."""
    from PIL import Image

    tiny = ModelInfo.read("kinema-tiny")
    _, first = world_image()
    end, last = world_image(END_PROMPT)
    made = spec(tiny, prompt=IMAGE_PROMPT, input_reference=data_url(first),
                last_reference=data_url(last), fit="pad")  # fmt: skip
    assert made.params["last_reference"] == {
        "file": "last.png", "size": "64x64", "fit": "pad", "image_noise": 0.0,
    }  # fmt: skip
    assert made.params["input_reference"]["file"] == "input.png"
    assert made.inputs == {"input.png": first, "last.png": last}
    jpeg = encoded(Image.fromarray(end), "JPEG")
    fields = {"prompt": IMAGE_PROMPT, "seconds": 1}
    uploaded = job_spec(fields, tiny, Limits(), Defaults(), upload=first, last_upload=jpeg)
    assert uploaded.params["last_reference"]["file"] == "last.jpg"
    assert uploaded.inputs == {"input.png": first, "last.jpg": jpeg}
    assert spec(tiny).params["last_reference"] is None

    start = data_url(first)
    noise = encoded(Image.effect_noise((128, 96), 60).convert("RGB"), "PNG")
    cases = [
        ({"last_reference": data_url(last)}, None, "last_reference", "invalid_value",
         "needs input_reference too"),
        ({"input_reference": start, "last_reference": data_url(b"not an image")}, None,
         "last_reference", "invalid_file_type", "PNG, JPEG or WebP"),
        ({"input_reference": start, "last_reference": {"image_url": "https://example.com/e.png"}},
         None, "last_reference.image_url", "unsupported", "cannot download"),
        ({"input_reference": start, "last_reference": {"file_id": "file_1"}}, None,
         "last_reference.file_id", "unsupported", "no files API"),
        ({"input_reference": start, "last_reference": data_url(noise)},
         Limits(max_upload_bytes=2 * len(first)), "last_reference.image_url", "file_too_large",
         "the limit"),
        ({"input_reference": start, "last_reference": data_url(last), "seconds": 0}, None,
         "seconds", "out_of_range", "more than one frame"),
    ]  # fmt: skip
    assert len(noise) > 2 * len(first)
    for images, limits, param, code, words in cases:
        with pytest.raises(ApiError) as refused:
            job_spec({"prompt": PROMPT, "seconds": 1, **images}, tiny, limits or Limits(),
                     Defaults())  # fmt: skip
        error = refused.value
        assert (error.param, error.code) == (param, code), error.message
        assert error.status in (400, 413) and words in error.message, error.message
    with pytest.raises(ApiError, match="last_reference is given twice"):
        job_spec({**fields, "last_reference": data_url(last)}, tiny, Limits(), Defaults(),
                 upload=first, last_upload=last)  # fmt: skip


def test_motion_is_refused_naming_a_model_without_a_motion_input(plain_model):
    plain = ModelInfo.read(str(plain_model))
    assert not plain.has_motion
    with pytest.raises(ApiError) as refused:
        spec(plain, motion=100)
    error = refused.value
    assert error.status == 400 and error.code == "unsupported" and error.param == "motion"
    assert str(plain_model) in error.message and "no motion input" in error.message
    assert spec(plain).params["motion"] is None


def test_motion_is_taken_by_a_model_with_a_motion_input(micro_model, tmp_path):
    torch.set_num_threads(1)  # the machine is small
    tiny = ModelInfo.read("kinema-tiny")  # the shipped model has a motion input too
    assert tiny.has_motion and spec(tiny, motion=100).params["motion"] == 100
    micro = ModelInfo.read(str(micro_model))
    assert micro.has_motion
    with pytest.raises(ApiError) as out_of_range:
        spec(micro, motion=300)
    assert out_of_range.value.param == "motion" and out_of_range.value.code == "out_of_range"
    params = spec(micro, motion=200).params
    assert params["motion"] == 200
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    job = store.create("alice", micro.name, PROMPT, params)
    worker = Worker(store, tmp_path, model=micro.name, pipeline=kinema.load(micro_model))
    assert worker.run(max_jobs=1) == 1
    done = store.get(job.id)
    assert done.status == COMPLETED, done.error_message
    frames, _, meta = read_video(tmp_path / "videos" / job.id / done.output / "video.mp4")
    assert frames.shape == (9, 64, 64, 3) and float(meta["motion"]) == 200
    store.close()


def test_a_prompt_the_safety_policy_refuses_is_a_400_before_any_job():
    with pytest.raises(ApiError) as refused:
        spec(ModelInfo.read("kinema-tiny"), prompt="a gory massacre on a black background")
    error = refused.value
    assert (error.status, error.code, error.param) == (400, "prompt_refused", "prompt")
    assert "violence" in error.message and "nothing was generated" in error.message


def test_a_clip_past_the_window_is_refused_by_a_model_that_cannot_chain(tmp_path):
    """kinema-tiny chains windows past its 33 frames; a model whose defaults.json says it takes
    no known frames (as Wan2.1's) makes one window of its max_frames, and refuses more, a start
    image and extensions as a 400 naming what to change, before any job."""
    import json

    from kinema.checkpoint import CheckpointError
    from kinema.serve.schemas import ExtendBody
    from kinema.serve.validation import extension_spec

    tiny = ModelInfo.read("kinema-tiny")
    assert (tiny.base.max_frames, tiny.takes_known_frames) == (33, True)
    assert spec(tiny, seconds=8).params["num_frames"] == 65  # a chain of windows
    one_window = tmp_path / "one-window"
    one_window.mkdir()
    for name in ("dit.safetensors", "vae.safetensors"):
        (one_window / name).symlink_to(MODELS["kinema-tiny"] / name)
    (one_window / "defaults.json").write_text(json.dumps({"max_frames": 17, "known_frames": False}))
    info = ModelInfo.read(str(one_window))
    assert spec(info, seconds=2).params["num_frames"] == 17
    with pytest.raises(ApiError) as refused:
        spec(info, seconds=3)
    error = refused.value
    assert (error.status, error.param, error.code) == (400, "seconds", "out_of_range")
    assert "25 frames (3 s at 8 fps)" in error.message
    assert "one window (17 frames, 2 s at 8 fps)" in error.message
    assert "at most 2 s" in error.message and "a model that chains windows" in error.message
    with pytest.raises(ApiError, match="takes no images"):
        spec(info, input_reference={"image_url": "data:image/png;base64,AAAA"})
    with pytest.raises(ApiError, match="without input_reference or last_reference") as refused:
        spec(info, input_reference={"image_url": "data:image/png;base64,AAAA"},
             last_reference={"image_url": "data:image/png;base64,AAAA"})  # fmt: skip
    assert (refused.value.param, refused.value.code) == ("input_reference", "unsupported")
    body = ExtendBody(prompt=PROMPT, seconds="1", video={"id": "video_abc"})
    with pytest.raises(ApiError, match="extending a video is not supported"):
        extension_spec(body, "video_abc", {}, info, Limits(), Defaults())
    (one_window / "defaults.json").write_text(json.dumps({"max_frames": "17"}))
    with pytest.raises(CheckpointError, match="max_frames must be a whole number"):
        ModelInfo.read(str(one_window))


def test_an_output_past_memory_is_a_400_even_where_the_limits_allow_it():
    # an operator's limits may allow long, large, fast clips; the model's base clip for this one
    # is small (64x64, 8 fps), the 2048x2048 60 fps output it is upsampled to is 453 GB
    limits = Limits(max_seconds=600, max_fps=60, max_pixels=2048 * 2048)
    fields = {"prompt": PROMPT, "seconds": 600, "fps": 60, "size": "2048x2048"}
    with pytest.raises(ApiError) as refused:
        job_spec(fields, ModelInfo.read("kinema-tiny"), limits, Defaults())
    assert refused.value.status == 400 and "the output's 36001 frames" in refused.value.message

"""Workers: a job survives its worker being killed or stalled mid-job and completes exactly once;
cancellation stops a running job; shutdown hands the job back; input files (a start image, a
clip to extend) are found in the shared data directory, and a missing one fails only its job; a
first-and-last-frame job, stored as the API stores it, is made after a restart."""

import os
import signal
import threading
import time

import pytest
from serve_helpers import IMAGE_PROMPT, PROMPT, psnr, stop, wait_for, worker, world_image

pytest.importorskip("sqlalchemy")

from kinema.io.video import read_video  # noqa: E402
from kinema.serve.jobs import (  # noqa: E402
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    QUEUED,
    JobStore,
    new_job_id,
)
from kinema.serve.storage import SOURCE_VIDEO, Storage  # noqa: E402
from kinema.serve.worker import Worker  # noqa: E402

LEASE = "1.5"


# few steps that still give a real clip: with 4 or fewer the default model's clips of PROMPT
# (5 and 9 frames, seed 1) are black frames, which the safety stage rightly rejects as blank
FEW_STEPS = 6


def params(steps: int, frames: int = 17) -> dict:
    return {"width": 64, "height": 64, "num_frames": frames, "fps": 8.0, "steps": steps,
            "guidance": 5.0, "negative_prompt": "", "seed": 1, "solver": "euler", "seconds": "2"}  # fmt: skip


def mid_job(store, job_id, holder=None):
    def check():
        job = store.get(job_id)
        return job.status == IN_PROGRESS and job.progress >= 10 and holder in (None, job.worker)

    return check


def test_killed_and_stalled_workers_the_job_completes_exactly_once(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    store = JobStore(f"sqlite:///{data / 'jobs.db'}", lease_seconds=float(LEASE))
    job = store.create("alice", "kinema-tiny", PROMPT, params(steps=20))
    args = ("--database", f"sqlite:///{data / 'jobs.db'}", "--lease-seconds", LEASE)
    procs = []
    try:
        a = worker(data, *args, log=tmp_path / "a.log")
        procs.append(a)
        wait_for(mid_job(store, job.id), 90, "worker A to be mid-job")
        a.kill()  # A dies holding the job
        a.wait()
        assert store.get(job.id).status == IN_PROGRESS
        first = store.get(job.id).worker

        b = worker(data, *args, log=tmp_path / "b.log")
        procs.append(b)
        wait_for(lambda: store.get(job.id).attempts == 2 and mid_job(store, job.id)(), 90,
                 "worker B to take the job over after A's lease")  # fmt: skip
        os.kill(b.pid, signal.SIGSTOP)  # B stalls holding the job (a zombie, not dead)

        c = worker(data, *args, "--max-jobs", "1", log=tmp_path / "c.log")
        procs.append(c)
        wait_for(lambda: store.get(job.id).status == COMPLETED, 90, "worker C to complete it")
        assert c.wait(30) == 0
        done = store.get(job.id)

        os.kill(b.pid, signal.SIGCONT)  # B wakes up and must learn it lost the job
        wait_for(lambda: " lost " in (tmp_path / "b.log").read_text(), 30, "B to give up")
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                stop(proc)

    after = store.get(job.id)
    assert after == done and after.attempts == 3  # B changed nothing
    events = store.events(job.id)
    kinds = [e["kind"] for e in events]
    assert kinds.count("completed") == 1 and kinds.count("claimed") == 3
    assert kinds.count("lease_expired") == 2
    holders = [e["worker"] for e in events if e["kind"] == "claimed"]
    assert holders[0] == first and len(set(holders)) == 3
    assert events[-1]["kind"] == "completed" and events[-1]["worker"] == holders[2]
    folder = data / "videos" / job.id
    assert [p.name for p in folder.iterdir()] == [after.output]  # only C's files, no leftovers
    assert sorted(p.name for p in (folder / after.output).iterdir()) == [
        "spritesheet.jpg", "thumbnail.webp", "video.mp4",
    ]  # fmt: skip
    frames, _, meta = read_video(folder / after.output / "video.mp4")
    assert frames.shape == (17, 64, 64, 3) and meta["prompt"] == PROMPT


@pytest.fixture(scope="module")
def pipe():
    import kinema

    return kinema.load()


@pytest.fixture
def running_worker(tmp_path, pipe):
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}", lease_seconds=5.0)
    stop_event = threading.Event()
    runner = Worker(store, tmp_path, pipeline=pipe, poll_seconds=0.05)
    thread = threading.Thread(target=runner.run, args=(stop_event,), daemon=True)
    thread.start()
    yield store, stop_event, thread
    stop_event.set()
    thread.join(60)
    store.close()


def test_cancel_stops_a_running_job_and_the_worker_goes_on(running_worker, tmp_path):
    store, _, _ = running_worker
    job = store.create("alice", "kinema-tiny", PROMPT, params(steps=200))
    wait_for(mid_job(store, job.id), 60, "the job to be running")
    store.cancel(job.id, "alice")
    wait_for(lambda: store.get(job.id).status == FAILED, 30, "the worker to stop")
    cancelled = store.get(job.id)
    assert cancelled.error_code == "cancelled" and cancelled.progress < 90
    assert not (tmp_path / "videos" / job.id).exists()
    nxt = store.create("alice", "kinema-tiny", PROMPT, params(steps=FEW_STEPS, frames=5))
    wait_for(lambda: store.get(nxt.id).status == COMPLETED, 60, "the next job")


def test_shutdown_hands_the_running_job_back(running_worker):
    store, stop_event, thread = running_worker
    job = store.create("alice", "kinema-tiny", PROMPT, params(steps=200))
    wait_for(mid_job(store, job.id), 60, "the job to be running")
    stop_event.set()
    thread.join(30)
    assert not thread.is_alive()
    back = store.get(job.id)
    assert back.status == QUEUED and back.attempts == 0 and back.claim_token is None
    assert [e["kind"] for e in store.events(job.id)] == ["created", "claimed", "released"]


def test_input_files_from_the_data_directory(running_worker, tmp_path):
    """What the API stores before queueing: the worker knows only the shared data directory."""
    store, _, _ = running_worker
    storage = Storage(tmp_path)
    image, png = world_image()
    reference = {"file": "input.png", "size": "64x64", "fit": "crop", "image_noise": 0.0}
    first = new_job_id()
    storage.put_input(first, "input.png", png)
    with_image = {**params(steps=FEW_STEPS, frames=9), "input_reference": reference}
    store.create("alice", "kinema-tiny", IMAGE_PROMPT, with_image, job_id=first)
    wait_for(lambda: store.get(first).status == COMPLETED, 60, "the image-to-video job")
    done = store.get(first)
    source = storage.path(done.id, done.output, "video")
    frames, _, _ = read_video(source)
    assert frames.shape == (9, 64, 64, 3) and psnr(frames[0], image) >= 26

    extension = new_job_id()
    storage.copy_input(source, extension, SOURCE_VIDEO)
    extend = {**params(steps=FEW_STEPS, frames=17), "extended_from": done.id, "extend_seconds": 1.0}
    store.create("alice", "kinema-tiny", IMAGE_PROMPT, extend, job_id=extension)
    wait_for(lambda: store.get(extension).status == COMPLETED, 60, "the extension")
    job = store.get(extension)
    longer, _, meta = read_video(storage.path(job.id, job.output, "video"))
    assert longer.shape == (17, 64, 64, 3) and meta["extended_from"] == done.id
    assert psnr(longer[0], frames[0]) >= 35

    lost = store.create("alice", "kinema-tiny", IMAGE_PROMPT, with_image)  # no file stored
    wait_for(lambda: store.get(lost.id).status == FAILED, 60, "the job without its image")
    failed = store.get(lost.id)
    assert failed.error_code == "invalid_settings" and "cannot read image" in failed.error_message
    nxt = store.create("alice", "kinema-tiny", PROMPT, params(steps=FEW_STEPS, frames=5))
    wait_for(lambda: store.get(nxt.id).status == COMPLETED, 60, "the next job")


def test_a_first_and_last_frame_job_is_made_after_a_restart(tmp_path, pipe):
    """Services.submit stores last_reference as it stores input_reference: a file beside the
    job (last.png) and an entry in its params. After the API and the worker that claimed the job
    are gone, a fresh store and worker make it, starting and ending on the images."""
    from kinema.serve.app import Services
    from kinema.serve.config import ServeConfig

    first, first_png = world_image()
    last, last_png = world_image("a large blue square moving left on a gray background")
    config = ServeConfig(data_dir=tmp_path, lease_seconds=0.5)
    services = Services.build(config)
    fields = {"prompt": IMAGE_PROMPT, "seconds": "1", "steps": 2, "seed": 1}
    job = services.submit("alice", fields, first_png, last_png)
    missing = services.submit("alice", fields, first_png, last_png)
    assert job.params["last_reference"]["file"] == "last.png"
    assert (tmp_path / "videos" / job.id / "last.png").read_bytes() == last_png
    assert services.store.claim("gone", ["kinema-tiny"]).job.id == job.id  # then it dies
    services.store.close()
    Storage(tmp_path).input_path(missing.id, "last.png").unlink()
    time.sleep(0.6)  # its lease runs out

    store = JobStore(config.db_url, lease_seconds=5.0)
    assert Worker(store, tmp_path, pipeline=pipe).run(max_jobs=2) == 2
    done = store.get(job.id)
    assert done.status == COMPLETED and done.attempts == 2, done.error_message
    frames, _, _ = read_video(Storage(tmp_path).path(job.id, done.output, "video"))
    assert frames.shape == (9, 64, 64, 3)
    assert psnr(frames[0], first) >= 26 and psnr(frames[-1], last) >= 26  # after H.264
    assert psnr(frames[-1], first) < 20  # it ends on the last image, not the first held
    failed = store.get(missing.id)
    assert failed.status == FAILED and failed.error_code == "invalid_settings"
    assert "cannot read image" in failed.error_message
    store.close()


# ----------------------------------------------------------------------------- production marks


class FlagFrame:
    """A fake frame classifier that flags one frame of every clip."""

    name = "fake-frame-check"

    def __init__(self, index: int):
        self.index, self.count = index, 0

    def __call__(self, frame):
        self.count += 1
        return "flagged on purpose" if (self.count - 1) % 17 == self.index else None


def test_served_clips_are_safety_checked_watermarked_and_signed(tmp_path, pipe):
    from kinema.production import watermark as wm
    from kinema.production.produce import Stages
    from kinema.production.verify import verify

    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}", lease_seconds=5.0)
    good = store.create("alice", "kinema-tiny", PROMPT, params(steps=FEW_STEPS))
    Worker(store, tmp_path, pipeline=pipe).run(max_jobs=1)
    done = store.get(good.id)
    assert done.status == COMPLETED, done.error_message
    checked = verify(Storage(tmp_path).path(good.id, done.output, "video"))
    assert checked.ok, checked.problems  # watermark found and the C2PA manifest intact
    job_hex = good.id.removeprefix("video_")  # the job id is what the watermark carries
    assert checked.watermark.payload == wm.payload_from_id(job_hex)

    flagged = store.create("alice", "kinema-tiny", PROMPT, params(steps=FEW_STEPS))
    stages = Stages(frame_classifiers=[FlagFrame(8)])
    Worker(store, tmp_path, pipeline=pipe, stages=stages).run(max_jobs=1)
    failed = store.get(flagged.id)
    assert failed.status == FAILED and failed.error_code == "output_flagged"
    assert "frame 8 flagged by safety classifier 'fake-frame-check'" in failed.error_message
    assert not (tmp_path / "videos" / flagged.id).exists()  # nothing stored

    plain = store.create("alice", "kinema-tiny", PROMPT, params(steps=FEW_STEPS))
    Worker(store, tmp_path, pipeline=pipe, watermark=False, c2pa=False).run(max_jobs=1)
    unmarked = verify(Storage(tmp_path).path(plain.id, store.get(plain.id).output, "video"))
    assert not unmarked.watermark.found and not unmarked.provenance.found
    store.close()


def test_a_larger_faster_request_is_generated_at_the_base_format_then_upsampled(tmp_path, pipe):
    from kinema.serve.config import Defaults, Limits
    from kinema.serve.validation import ModelInfo, job_spec

    spec = job_spec({"prompt": PROMPT, "size": "128x128", "seconds": "1", "fps": 16, "steps": 10,
                     "seed": 1},
                    ModelInfo.read("kinema-tiny"), Limits(), Defaults())  # fmt: skip
    assert spec.params["num_frames"] == 17  # 9 frames at 8 fps, interpolated to 16 fps
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}", lease_seconds=5.0)
    job = store.create("alice", "kinema-tiny", PROMPT, spec.params)
    Worker(store, tmp_path, pipeline=pipe).run(max_jobs=1)
    done = store.get(job.id)
    assert done.status == COMPLETED, done.error_message
    frames, fps, meta = read_video(Storage(tmp_path).path(job.id, done.output, "video"))
    assert frames.shape == (17, 128, 128, 3) and fps == 16
    assert (meta["base_width"], float(meta["base_fps"])) == ("64", 8.0)
    assert {"interpolate", "upscale", "safety", "watermark"} <= set(done.telemetry["stages"])
    store.close()

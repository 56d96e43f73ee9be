"""The web UI: a Gradio app mounted at /ui on the API's server, using the same job queue.

A prompt, an optional start image (the clip starts from it) and last image (it ends on it),
settings, a progress bar driven by the sampler, the finished video with its download button, and
a gallery of the key's past videos with their quality reports and telemetry. With API keys
configured, the UI asks for one and shows only that key's videos. Gradio serves files only from
its own cache, so the UI hands it copies made in a private temporary folder; the data directory
itself is never exposed.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a server
# this server's own Gradio cache (read when gradio is imported), removed when it exits
_CACHE = Path(tempfile.mkdtemp(prefix="kinema-ui-"))
os.environ.setdefault("GRADIO_TEMP_DIR", str(_CACHE / "gradio"))
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)

import gradio as gr  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from kinema.pipeline.conditioning import FIT_MODES  # noqa: E402
from kinema.serve.errors import ApiError  # noqa: E402
from kinema.serve.jobs import COMPLETED, FAILED, Job  # noqa: E402

EXAMPLES = [
    "a red circle moving left on a black background",
    "two small green squares moving right on a navy background",
    "a large yellow triangle bouncing on a gray background",
]
_POLL_SECONDS = 0.25
_KEEP_COPIES_SECONDS = 600.0


class _Copies:
    """Copies of job files that Gradio may serve, in a private folder, dropped after a while."""

    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="copies-", dir=_CACHE))

    def of(self, path: Path, name: str) -> str:
        now = time.time()
        for old in self.folder.iterdir():
            if now - old.stat().st_mtime > _KEEP_COPIES_SECONDS:
                old.unlink(missing_ok=True)
        target = self.folder / name
        shutil.copyfile(path, target)
        return str(target)


def _report(job: Job) -> dict:
    p = job.params
    return {
        "id": job.id, "status": job.status, "prompt": job.prompt, "seed": p["seed"],
        "size": f"{p['width']}x{p['height']}", "frames": p["num_frames"], "fps": p["fps"],
        "steps": p["steps"], "start_image": p.get("input_reference"),
        "last_image": p.get("last_reference"),
        "extended_from": p.get("extended_from"), "quality": job.quality, "telemetry": job.telemetry,
        "error": job.error_message if job.status == FAILED else None,
    }  # fmt: skip


def build_ui(services) -> gr.Blocks:
    limits, defaults = services.config.limits, services.config.defaults
    copies = _Copies()
    side = int(limits.max_pixels**0.5)
    sizes = [f"{s}x{s}" for s in (64, 96, 128, 192, 256, 384, 512) if s <= side]
    sizes = sizes or [defaults.size]

    def owner(key: str | None) -> str:
        try:
            return services.auth.owner(key or None)
        except ApiError as e:
            raise gr.Error(e.message) from None

    def file_of(job: Job, variant: str) -> str | None:
        try:
            path = services.file(job, variant)
        except ApiError:
            return None
        return copies.of(path, f"{job.id}-{path.name}")

    def gallery(key: str | None):
        who = owner(key)
        jobs, _ = services.store.list(who, limit=48)
        done = [j for j in jobs if j.status == COMPLETED]
        items = [(file_of(j, "thumbnail"), j.prompt[:80]) for j in done]
        shown = [(thumb, caption) for thumb, caption in items if thumb is not None]
        ids = [j.id for j, (thumb, _) in zip(done, items, strict=True) if thumb is not None]
        return shown, ids

    def read_image(path: str | None, what: str) -> bytes | None:
        """An image in Gradio's cache, with the API's size limit (validation checks the rest)."""
        if not path:
            return None
        size = Path(path).stat().st_size
        if size > limits.max_upload_bytes:
            raise gr.Error(f"the {what} is {size} bytes; the limit is {limits.max_upload_bytes}")
        return Path(path).read_bytes()

    def generate(key, prompt, image, last_image, fit, seconds, size, steps, guidance, eta, seed,
                 negative, progress=gr.Progress()):  # noqa: B008 (Gradio's way)  # fmt: skip
        who = owner(key)
        fields = {
            "prompt": prompt or "", "seconds": f"{float(seconds):g}", "size": size,
            "steps": int(steps), "guidance": float(guidance), "eta": float(eta),
            "negative_prompt": negative or "",
        }  # fmt: skip
        if seed is not None and int(seed) >= 0:
            fields["seed"] = int(seed)
        # files in Gradio's cache: the same checks as API uploads
        upload = read_image(image, "start image")
        last_upload = read_image(last_image, "last image")
        if upload is not None:
            fields["fit"] = fit
        try:
            job = services.submit(who, fields, upload, last_upload)
        except ApiError as e:
            raise gr.Error(e.message) from None
        progress(0.0, desc="queued")
        while job.status not in (COMPLETED, FAILED):
            time.sleep(_POLL_SECONDS)
            job = services.store.get(job.id, who)
            if job is None:
                raise gr.Error("the video was deleted")
            progress(job.progress / 100, desc=job.status.replace("_", " "))
        if job.status == FAILED:
            raise gr.Error(f"generation failed: {job.error_message}")
        shown, ids = gallery(key)
        status = f"done: `{job.id}` in {job.telemetry['time_to_first_result_seconds']:.1f} s"
        return file_of(job, "video"), _report(job), status, shown, ids

    def select(key, ids, evt: gr.SelectData):
        who = owner(key)
        job = services.store.get(ids[evt.index], who) if 0 <= evt.index < len(ids) else None
        if job is None:
            raise gr.Error("that video is gone")
        return file_of(job, "video"), _report(job)

    # Gradio keeps copies of the files it serves: drop those older than an hour, hourly
    with gr.Blocks(title="kinema", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(f"# kinema\nText to video with **{services.model.name}**.")
        key = gr.Textbox(label="API key", type="password", visible=services.auth.required)
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox(
                    label="Prompt", lines=2, placeholder=EXAMPLES[0], elem_id="prompt"
                )
                gr.Examples(EXAMPLES, inputs=prompt)
                with gr.Row():
                    image = gr.Image(label="Start image (optional: the clip starts from it)",
                                     type="filepath", sources=["upload"],
                                     elem_id="start-image")  # fmt: skip
                    last_image = gr.Image(label="Last image (optional, with a start image: the "
                                          "clip ends on it)", type="filepath", sources=["upload"],
                                          elem_id="last-image")  # fmt: skip
                with gr.Accordion("Settings", open=False):
                    seconds = gr.Slider(0, limits.max_seconds, value=float(defaults.seconds),
                                        step=0.5, label="Seconds")  # fmt: skip
                    size = gr.Dropdown(sizes, value=defaults.size if defaults.size in sizes else sizes[0],
                                       label="Size")  # fmt: skip
                    steps = gr.Slider(
                        1, limits.max_steps, step=1, label="Steps",
                        value=min(services.model.default("steps", defaults.steps), limits.max_steps),
                    )  # fmt: skip
                    guidance = gr.Slider(0, 15, value=services.model.default("guidance", defaults.guidance),
                                         step=0.5, label="Guidance")  # fmt: skip
                    eta = gr.Slider(0, 1, value=float(services.model.default("eta", None)),
                                    step=0.1, label="Fresh noise per step (eta: 0 the ODE "
                                    "sampler, 1 ancestral)", elem_id="eta")  # fmt: skip
                    fit = gr.Radio(list(FIT_MODES), value="crop",
                                   label="Images of another size: crop, pad or resize")  # fmt: skip
                    seed = gr.Number(-1, precision=0, label="Seed (-1: random)")
                    negative = gr.Textbox(label="Negative prompt")
                run = gr.Button("Generate", variant="primary", elem_id="generate")
                status = gr.Markdown(elem_id="status")
            with gr.Column():
                video = gr.Video(label="Video", interactive=False, buttons=["download"],
                                 elem_id="result", loop=True, autoplay=True)  # fmt: skip
                report = gr.JSON(label="Quality report and telemetry")
        gr.Markdown("## Your videos")
        refresh = gr.Button("Refresh", size="sm")
        ids = gr.State([])
        past = gr.Gallery(label="Past videos (select one for its video and report)", columns=8,
                          height=240, elem_id="gallery", allow_preview=False)  # fmt: skip
        run.click(
            generate,
            [key, prompt, image, last_image, fit, seconds, size, steps, guidance, eta, seed,
             negative],
            [video, report, status, past, ids], concurrency_limit=None, show_progress_on=[video],
        )  # fmt: skip
        refresh.click(gallery, [key], [past, ids])
        demo.load(
            lambda k: gallery(k) if not services.auth.required else ([], []), [key], [past, ids]
        )
        past.select(select, [key, ids], [video, report])
    return demo


def mount_ui(app: FastAPI, services, path: str = "/ui") -> None:
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["monospace"])
    gr.mount_gradio_app(
        app, build_ui(services), path=path, ssr_mode=False, theme=theme, footer_links=[],
        blocked_paths=[str(services.config.data_dir.resolve())],
    )  # fmt: skip

"""The web UI in headless Chromium (Debian's, through Playwright): type a prompt, give a start
image, generate, see the finished video (starting from the image); the gallery shows it
afterwards. Only loopback traffic is allowed."""

import pytest
from serve_helpers import IMAGE_PROMPT, chromium_path, psnr, serve, world_image

pytest.importorskip("gradio")
playwright = pytest.importorskip("playwright.sync_api")


def test_ui_generates_a_video_from_a_start_image_in_chromium(tmp_path):
    from kinema.io.video import read_video

    browser_path = chromium_path()
    image, png = world_image()
    (tmp_path / "start.png").write_bytes(png)
    with serve(tmp_path, "--api-key", "ui-key", "--default-steps", "2") as server:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=browser_path, headless=True,
                                        args=["--no-sandbox"])  # fmt: skip
            try:
                page = browser.new_page()
                outside = []

                def loopback_only(route):
                    if route.request.url.startswith(server.url):
                        route.continue_()
                    else:
                        outside.append(route.request.url)
                        route.abort()

                page.route("**/*", loopback_only)
                page.goto(f"{server.url}/ui/")
                page.get_by_label("API key").fill("ui-key")
                page.locator("#prompt textarea").fill(IMAGE_PROMPT)
                page.locator("#start-image input[type=file]").set_input_files(
                    tmp_path / "start.png"
                )
                page.get_by_text("Settings").click()
                eta = page.locator("#eta input[type=number]")
                assert float(eta.input_value()) == 1.0  # kinema-tiny's own default
                eta.fill("0.5")
                eta.press("Enter")
                page.locator("#generate").click()
                video = page.locator("#result video")
                video.wait_for(timeout=90_000)
                src = video.get_attribute("src")
                assert src.startswith(server.url) and src.endswith(".mp4")
                mp4 = page.request.get(src).body()
                assert mp4[4:8] == b"ftyp"  # a real MP4
                (tmp_path / "result.mp4").write_bytes(mp4)
                assert "done:" in page.locator("#status").inner_text()
                page.get_by_role("button", name="Refresh").click()
                page.locator("#gallery img").first.wait_for(timeout=30_000)
                assert page.locator("#gallery img").count() == 1
                assert outside == [], f"the page reached beyond loopback: {outside}"
            finally:
                browser.close()
        jobs = list((server.data_dir / "videos").iterdir())
        assert len(jobs) == 1  # made through the same queue as the API
        assert (jobs[0] / "input.png").is_file()  # the start image, stored with the job
    frames, _, metadata = read_video(tmp_path / "result.mp4")
    assert psnr(frames[0], image) >= 26
    assert float(metadata["eta"]) == 0.5  # the slider's setting reached the sampler

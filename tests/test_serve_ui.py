"""The web UI in headless Chromium (Debian's, through Playwright): type a prompt, generate, see
the finished video; the gallery shows it afterwards. Only loopback traffic is allowed."""

import pytest
from serve_helpers import PROMPT, chromium_path, serve

pytest.importorskip("gradio")
playwright = pytest.importorskip("playwright.sync_api")


def test_ui_generates_a_video_in_chromium(tmp_path):
    browser_path = chromium_path()
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
                page.locator("#prompt textarea").fill(PROMPT)
                page.locator("#generate").click()
                video = page.locator("#result video")
                video.wait_for(timeout=90_000)
                src = video.get_attribute("src")
                assert src.startswith(server.url) and src.endswith(".mp4")
                assert page.request.get(src).body()[4:8] == b"ftyp"  # a real MP4
                assert "done:" in page.locator("#status").inner_text()
                page.get_by_role("button", name="Refresh").click()
                page.locator("#gallery img").first.wait_for(timeout=30_000)
                assert page.locator("#gallery img").count() == 1
                assert outside == [], f"the page reached beyond loopback: {outside}"
            finally:
                browser.close()
        jobs = list((server.data_dir / "videos").iterdir())
        assert len(jobs) == 1  # made through the same queue as the API

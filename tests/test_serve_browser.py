"""`pggan serve` in a real browser: Debian's Chromium driven by Playwright (never a browser download).
Skipped where Chromium or Playwright is missing (`.ci/run` installs Chromium through apt-get)."""
import os
import shutil
import socket
import threading
import time

import pytest

pytest.importorskip("starlette")
sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import uvicorn
    from test_training import tiny_config

    from pggan.serve.app import create_app
    from pggan.training.run import run_training

    tmp = tmp_path_factory.mktemp("browser")
    cfg = tiny_config(tmp)
    cfg.sched.total_kimg, cfg.image_kimg = 1.2, 0.2
    run = run_training(cfg, progress=False, echo=lambda m: None).run_dir
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(os.path.dirname(run)), host="127.0.0.1", port=port,
                                        log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", os.path.basename(run)
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def page():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        browser.close()


def _shots(name: str, page, tmp_path) -> None:
    page.screenshot(path=str(tmp_path / name), full_page=False)
    if os.environ.get("PGGAN_SCREENSHOTS"):                     # docs/serve-*.png are made this way
        page.screenshot(path=os.path.join(os.environ["PGGAN_SCREENSHOTS"], name), full_page=False)


def test_runs_page_run_page_curves_and_timeline(server, page, tmp_path):
    base, name = server
    page.goto(base + "/")
    page.wait_for_selector(f"text={name}")
    assert "finished" in page.inner_text("#runs")
    page.click(f"text={name}")
    page.wait_for_function("document.getElementById('summary').textContent.includes('finished')")
    # the loss chart has been drawn: some pixels of the canvas are not blank
    drawn = page.evaluate("""() => { const c = document.getElementById('loss');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
        for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; }""")
    assert drawn > 500
    page.wait_for_function("document.getElementById('fakes').src.includes('fakes')")
    last = page.get_attribute("#fakes", "src")
    page.eval_on_selector("#slider", "s => { s.value = 0; s.dispatchEvent(new Event('input')); }")
    first = page.get_attribute("#fakes", "src")
    assert first != last and "fakes000000.2" in first
    _shots("serve-run.png", page, tmp_path)


def test_explorer_sample_interpolation_and_download(server, page, tmp_path):
    base, name = server
    page.goto(f"{base}/explore?network={name}/generator-final.safetensors")
    page.wait_for_function("[...document.querySelectorAll('#grid img')].filter(i => i.complete && i.src).length >= 16")
    page.click("#grid img >> nth=3")
    page.wait_for_function("document.getElementById('latent').textContent.startsWith('z = [')")
    assert page.inner_text("#seedinfo") == "seed 3"
    page.click("#grid img >> nth=5", modifiers=["Shift"])
    page.wait_for_function("document.getElementById('interp').src.startsWith('blob:')")
    page.wait_for_timeout(300)
    before = page.locator("#interp").screenshot()
    page.eval_on_selector("#t", "s => { s.value = 0.0; s.dispatchEvent(new Event('input')); }")
    page.wait_for_timeout(800)
    after = page.locator("#interp").screenshot()
    assert before != after                                    # the slider moved the image
    with page.expect_download() as info:
        page.click("#download")
    assert info.value.suggested_filename == "seed0003.png"
    path = tmp_path / "d.png"
    info.value.save_as(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    _shots("serve-explorer.png", page, tmp_path)

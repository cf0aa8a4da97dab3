"""The README's screenshots of `pggan serve`: a run page and the explorer, taken by Chromium (Playwright).

    python tools/serve_screenshots.py RUNS_FOLDER --out docs
"""
import argparse
import os
import shutil
import socket
import sys
import threading
import time

import uvicorn
from playwright.sync_api import sync_playwright

from pggan.serve.app import create_app
from pggan.serve.runs import find_runs

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs")
    ap.add_argument("--out", default="docs")
    a = ap.parse_args()
    name = next(iter(find_runs(a.runs)))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(a.runs), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 820})
        page.goto(f"{base}/run?name={name}")
        page.wait_for_function("document.getElementById('fakes').complete && document.getElementById('fakes').src")
        page.wait_for_timeout(500)
        page.screenshot(path=os.path.join(a.out, "serve-run.png"))
        page.goto(f"{base}/explore?network={name}/generator-final.safetensors")
        page.wait_for_function("[...document.querySelectorAll('#grid img')].filter(i => i.complete && i.src).length >= 16")
        page.click("#grid img >> nth=2")
        page.click("#grid img >> nth=9", modifiers=["Shift"])
        page.click("#more")
        page.wait_for_timeout(1500)
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=os.path.join(a.out, "serve-explorer.png"))
        browser.close()
    server.should_exit = True
    print(f"wrote {a.out}/serve-run.png and {a.out}/serve-explorer.png from {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The README's screenshots, of the real model's text: drives a running `batplots serve`
in headless Chromium (Debian's), at desktop and phone width.

    batplots serve --port 8765 --db /tmp/shots.sqlite3 &
    .venv/bin/python docs/screenshots.py http://127.0.0.1:8765 docs/screenshots

Writes desktop.png (a story in progress, three alternatives on offer) and phone.png.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
from playwright.sync_api import expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]
MODEL_WAIT_S = 600  # the real model on a busy 2-core machine: loading and each passage
OPENING = [("Commissioner Gordon lifts the red Bat-phone. \"Batman, the Joker has escaped from Gotham State "
            "Penitentiary!\"", 5), ("Batman and Robin slide down the Batpoles.", 11)]
TYPED = "At the Batcave, the Batcomputer whirs."


def main(url: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with httpx.Client(base_url=url, timeout=MODEL_WAIT_S) as api:
        deadline = time.monotonic() + MODEL_WAIT_S
        while api.get("/healthz").json()["status"] != "ready":
            if time.monotonic() > deadline:
                raise SystemExit("the model did not load in time")
            time.sleep(2)
        story = api.post("/api/stories", json={"title": "The Joker's Last Laugh"}).json()
        sid = story["id"]
        for text, seed in OPENING:
            story = api.post(f"/api/stories/{sid}/turns", json={"text": text, "version": story["version"]}).json()
            story = api.post(f"/api/stories/{sid}/continue", json={"version": story["version"], "seed": seed}).json()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{url}/#story={sid}")
        expect(page.locator("#story .passage.model")).to_have_count(2, timeout=30_000)
        page.fill("#next-text", TYPED)
        page.click("#alternatives-btn")
        expect(page.locator("#alternatives-heading")).to_have_text("Pick a continuation", timeout=MODEL_WAIT_S * 1000)
        page.screenshot(path=str(out / "desktop.png"), full_page=True)
        phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                                 device_scale_factor=2)
        phone.goto(f"{url}/#story={sid}")
        expect(phone.locator("#story .passage.model")).to_have_count(2, timeout=30_000)
        phone.screenshot(path=str(out / "phone.png"))
        browser.close()
    print(f"wrote {out / 'desktop.png'} and {out / 'phone.png'} (story {sid})")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))

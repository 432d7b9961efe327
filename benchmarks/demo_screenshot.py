"""The README's screenshot (docs/screenshot.png): the demo's page in compare mode,
``concise`` = 1 on the coffee question, greedy, 128 tokens, in headless Chromium.

    make serve                                   # in one terminal (the demo, port 8000)
    .venv/bin/python -m benchmarks.demo_screenshot [--url URL] [--out docs/screenshot.png]

Prints both panes' answers, so the picture can be checked against the committed
everyday results of the served demo.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import httpx

CHROMIUM = "/usr/bin/chromium"
# Headless, and none of Chromium's own calls home (refused on a closed network).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
QUESTION = "How do I make a good cup of coffee?"


def wait_healthy(url: str, timeout: float = 1200.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(2)
    raise SystemExit(f"{url} never became healthy")


def shoot(url: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.set_default_timeout(600_000)
        page.goto(f"{url}/")
        page.wait_for_selector('[data-arm="concise"]')
        page.check("#compare")
        weight = page.locator('[data-arm="concise"] .arm-number')
        weight.fill("1")
        weight.dispatch_event("change")
        page.eval_on_selector(
            "#temperature", "e => { e.value = '0'; e.dispatchEvent(new Event('input')); }"
        )
        page.fill("#max-tokens", "128")
        page.fill("#seed", "1")
        page.fill("#prompt", QUESTION)
        page.press("#prompt", "Enter")
        # Both panes done: each answer's line under it counts its tokens.
        page.wait_for_function(
            """() => {
              const metas = [...document.querySelectorAll('.msg.assistant .meta')];
              return metas.length === 2 && metas.every(m => m.textContent.includes('tokens'));
            }"""
        )
        for pane in ("unguided", "guided"):
            answer = page.locator(f'[data-pane="{pane}"] .msg.assistant')
            print(f"{pane}: {answer.locator('.text').text_content()}")
            print(f"  {answer.locator('.meta').text_content()}")
        page.screenshot(path=str(out))
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshot.png"))
    args = parser.parse_args()
    wait_healthy(args.url)
    shoot(args.url, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

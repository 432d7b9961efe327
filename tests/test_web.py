"""The web page at `/`, in real headless Chromium (Playwright) against a live server.

The server wants an API key, so the page has to ask for it before anything
else works. One server and one page serve the whole module, in file order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

from genarm.clients import GenARMClient

from conftest import TINY_SERVER_API_KEY, TINY_SERVER_CONTEXT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
API_KEY = TINY_SERVER_API_KEY
CONTEXT = TINY_SERVER_CONTEXT
PROMPT = "Tell me a short story about a dragon."
MAX_TOKENS = 32
# Two tests need the answer to reach the page slowly, however fast the model is, so
# they throttle the page's downloads (Chrome's network emulation, which also paces a
# fetch() body read as a ReadableStream: measured in headless Chromium 156, it hands
# the page ~1.5 KB pieces at the set rate, e.g. 4,000 B/s gave 4,057 B/s in 24 reads).
# Each streamed token is ~270 bytes of SSE (the event echoes the weights).
# 128 tokens, ~35 KB of SSE: at 16 KB/s it arrives over ~2 s in ~20 pieces, each a
# separate repaint, whereas unthrottled the idle tiny model can outrun the repaints.
STREAM_TOKENS = 128
STREAM_BYTES_PER_S = 16_000
# 1,500 tokens with EOS ignored, ~400 KB of SSE: at 2 KB/s the page would need minutes
# to read it, so Stop surely lands mid-answer, and the stopped answer ends at once.
STOP_TOKENS = 1500
STOP_BYTES_PER_S = 2_000

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium)",
)


@pytest.fixture(scope="module")
def server(tiny_server):
    return tiny_server


@pytest.fixture(scope="module")
def client(server):
    with GenARMClient(server.url, API_KEY, max_retries=0) as c:
        yield c


@pytest.fixture(scope="module")
def browser_log():
    """Every URL the page requested, and every script error it raised."""
    return {"requests": [], "page_errors": []}


@pytest.fixture(scope="module")
def page(server, browser_log):
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(60_000)
        page = context.new_page()
        page.on("request", lambda r: browser_log["requests"].append(r.url))
        page.on("pageerror", lambda e: browser_log["page_errors"].append(str(e)))
        yield page
        browser.close()
    assert browser_log["page_errors"] == []


def chat_requests(page, action) -> list:
    """Run ``action`` and return the chat requests it made, once all answers are done."""
    made = []
    listener = lambda r: made.append(r) if r.url.endswith("/v1/chat/completions") else None  # noqa: E731
    page.on("request", listener)
    try:
        action()
        page.locator("#send", has_text="Send").wait_for()
        page.wait_for_timeout(50)  # let the last 'requestfinished' land
    finally:
        page.remove_listener("request", listener)
    return made


def sse_events(body: bytes) -> list[dict]:
    lines = [
        line[len("data: ") :] for line in body.decode().splitlines() if line.startswith("data: ")
    ]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def arm_a_weights_in_1_to_2(server) -> float:
    """Requests the server counted with arm_a's weight in (1, 2] (its histogram buckets)."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text

    def bucket(le: str) -> float:
        pattern = rf'^genarm_reward_weight_bucket\{{arm="arm_a",le="{le}"\}} (\S+)$'
        match = re.search(pattern, text, re.M)
        return float(match.group(1)) if match else 0.0  # no request with arm_a yet

    return bucket("2.0") - bucket("1.0")


def set_slider(page, selector: str, arrows: int) -> None:
    """Move a range input with the keyboard, as a user would (Home, then steps)."""
    slider = page.locator(selector)
    slider.focus()
    page.keyboard.press("Home")
    for _ in range(abs(arrows)):
        page.keyboard.press("ArrowRight" if arrows > 0 else "ArrowLeft")


@contextmanager
def slow_download(page, bytes_per_s: int) -> Iterator[None]:
    """Throttle everything the page downloads to ``bytes_per_s``, inside the block only.

    Through the Chrome DevTools Protocol: the server still answers at full speed, the
    browser just hands the bytes to the page no faster than this.
    """
    cdp = page.context.new_cdp_session(page)

    def download_limit(limit: int) -> None:  # -1: no limit
        conditions = {"offline": False, "latency": 0, "uploadThroughput": -1}
        cdp.send("Network.emulateNetworkConditions", {**conditions, "downloadThroughput": limit})

    try:
        cdp.send("Network.enable")
        download_limit(bytes_per_s)
        yield
    finally:
        download_limit(-1)
        cdp.detach()


def send(page, text: str) -> None:
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def test_page_and_static_files_are_served_without_a_key(server):
    index = httpx.get(server.url + "/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in index.headers["content-security-policy"]
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        response = httpx.get(f"{server.url}/static/{name}")
        assert response.status_code == 200 and kind in response.headers["content-type"]
    assert httpx.get(f"{server.url}/static/nope.js").status_code == 404
    escape = httpx.get(f"{server.url}/static/..%2Fweb.py")
    assert escape.status_code == 404 and "error" in escape.json()
    # The page's own files need no key; the API still does.
    assert httpx.get(f"{server.url}/v1/models").status_code == 401


def test_asks_for_the_key_then_draws_one_slider_per_arm(page, server):
    page.goto(server.url)
    dialog = page.locator("#key-dialog")
    dialog.wait_for(state="visible")
    assert page.locator("#key-error").is_hidden()  # first ask: no error yet
    page.fill("#key-input", "wrong-key")
    page.press("#key-input", "Enter")
    # The server's words, in the page, and it asks again.
    page.locator("#key-error", has_text="invalid API key").wait_for()
    assert dialog.is_visible()
    page.fill("#key-input", API_KEY)
    page.click("#key-submit")
    dialog.wait_for(state="hidden")

    page.locator("#arms .arm").nth(1).wait_for()
    assert page.locator("#arms .arm-name").all_text_contents() == ["arm_a", "arm_b"]
    for name in ("arm_a", "arm_b"):
        slider = page.locator(f"#w-{name}")
        assert slider.get_attribute("min") == "-5" and slider.get_attribute("max") == "5"
        assert slider.input_value() == "0"  # the ARM's default_weight
        card = page.locator(f'#arms .arm[data-arm="{name}"]')
        assert f"tiny random ARM {name}" in card.text_content()
    page.locator("#status", has_text="ready").wait_for()
    assert page.locator("#model-id").text_content() == "base"
    # The key lives in this tab's sessionStorage only.
    assert page.evaluate("sessionStorage.getItem('genarm.apiKey')") == API_KEY
    assert page.evaluate("localStorage.length") == 0
    assert "web-test-key" not in page.evaluate("document.cookie")


def test_slider_weight_streams_into_the_page(page, server, client):
    set_slider(page, "#w-arm_a", 30)  # -5 + 30 * 0.05 = -3.5
    assert page.locator('[data-arm="arm_a"] .arm-number').input_value() == "-3.5"
    page.locator('[data-arm="arm_a"] .arm-number').fill("1.5")  # the number box, then blur
    page.locator('[data-arm="arm_a"] .arm-number').press("Tab")
    assert page.locator("#w-arm_a").input_value() == "1.5"
    set_slider(page, "#temperature", 0)  # Home: greedy, for a reference answer
    page.fill("#max-tokens", str(STREAM_TOKENS))
    # Record every length the answer's text takes while it arrives.
    page.evaluate(
        """() => {
          window.__lengths = [];
          new MutationObserver(() => {
            const texts = document.querySelectorAll('[data-pane="guided"] .assistant .text');
            if (texts.length) window.__lengths.push(texts[texts.length - 1].textContent.length);
          }).observe(document.body, {subtree: true, childList: true, characterData: true});
        }"""
    )
    messages = [{"role": "user", "content": PROMPT}]
    reference = client.chat(messages, {"arm_a": 1.5}, temperature=0, max_tokens=STREAM_TOKENS)
    unguided = client.chat(messages, {}, temperature=0, max_tokens=STREAM_TOKENS)
    before = arm_a_weights_in_1_to_2(server)
    # Throttled, so that the answer arrives in pieces the page must repaint one by
    # one, whatever the speed of the model (see STREAM_BYTES_PER_S).
    with (
        slow_download(page, STREAM_BYTES_PER_S),
        page.expect_response("**/v1/chat/completions") as response_info,
    ):
        (request,) = chat_requests(page, lambda: send(page, PROMPT))
    shown = page.locator('[data-pane="guided"] .msg.assistant .text').last.text_content()

    # What the page sent, what the server echoed, and what it counted.
    sent = request.post_data_json
    assert sent["reward_weights"] == {"arm_a": 1.5, "arm_b": 0.0}
    assert (
        sent["stream"] is True and sent["temperature"] == 0 and sent["max_tokens"] == STREAM_TOKENS
    )
    assert sent["messages"] == [{"role": "user", "content": PROMPT}]
    events = sse_events(response_info.value.body())
    assert all(e["reward_weights"] == {"arm_a": 1.5, "arm_b": 0.0} for e in events)
    assert arm_a_weights_in_1_to_2(server) == before + 1

    # Streamed: the text grew in many steps, and adds up to the server's answer.
    deltas = [c["delta"].get("content") or "" for e in events for c in e["choices"]]
    assert shown == "".join(deltas)
    # The page shows partial text while it streams: the throttled answer comes in ~20
    # pieces, so even a busy browser that merges a few of them shows several lengths.
    partial = set(page.evaluate("window.__lengths")) - {0, len(shown)}
    assert len(partial) >= 3, f"the answer appeared in too few steps: {sorted(partial)}"
    assert shown == reference.choices[0].message.content
    assert shown != unguided.choices[0].message.content  # the weight changed the answer
    meta = page.locator(".msg.assistant .meta").last.text_content()
    assert "arm_a +1.5" in meta and f"{reference.usage.completion_tokens} tokens" in meta

    # A follow-up carries the conversation so far.
    page.fill("#max-tokens", "4")
    (follow_up,) = chat_requests(page, lambda: send(page, "And then?"))
    assert follow_up.post_data_json["messages"] == [
        *messages,
        {"role": "assistant", "content": shown},
        {"role": "user", "content": "And then?"},
    ]


def test_compare_mode_two_answers_side_by_side(page, server, client, tmp_path):
    page.check("#compare")  # starts a new conversation in two panes
    assert page.locator('[data-pane="unguided"]').is_visible()
    assert page.locator(".msg").count() == 0
    set_slider(page, "#w-arm_b", 60)  # -5 + 60 * 0.05 = -2
    page.fill("#seed", "1234")
    page.fill("#max-tokens", str(MAX_TOKENS))
    requests = chat_requests(page, lambda: send(page, PROMPT))

    assert len(requests) == 2
    bodies = sorted(
        (r.post_data_json for r in requests), key=lambda b: b["reward_weights"]["arm_a"]
    )
    unguided_sent, guided_sent = bodies
    assert unguided_sent["reward_weights"] == {"arm_a": 0, "arm_b": 0}
    assert guided_sent["reward_weights"] == {"arm_a": 1.5, "arm_b": -2}
    for body in bodies:  # same prompt, seed and settings on both sides
        assert body["seed"] == 1234 and body["messages"] == [{"role": "user", "content": PROMPT}]
        assert body["temperature"] == 0 and body["max_tokens"] == MAX_TOKENS

    messages = [{"role": "user", "content": PROMPT}]
    texts = {}
    for pane, weights in (("unguided", {}), ("guided", {"arm_a": 1.5, "arm_b": -2.0})):
        msg = page.locator(f'[data-pane="{pane}"] .msg.assistant')
        assert msg.count() == 1
        texts[pane] = msg.locator(".text").text_content()
        echoed = json.loads(msg.get_attribute("data-weights"))
        assert echoed == {"arm_a": 0.0, "arm_b": 0.0, **weights}
        reference = client.chat(messages, weights, temperature=0, max_tokens=MAX_TOKENS, seed=1234)
        assert texts[pane] == reference.choices[0].message.content
    assert texts["unguided"] != texts["guided"]
    assert "all weights 0" in page.locator('[data-pane="unguided"] .meta').text_content()
    assert "arm_b -2" in page.locator('[data-pane="guided"] .pane-head').text_content()

    shot = tmp_path / "screenshot.png"
    page.screenshot(path=str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_server_errors_appear_in_words(page, server):
    page.uncheck("#compare")
    page.fill("#seed", "")
    for max_tokens, words in (
        ("0", "Error 400: invalid value for 'max_tokens'"),
        ("100000", f"exceeds the context of {CONTEXT} tokens"),
    ):
        page.fill("#max-tokens", max_tokens)
        chat_requests(page, lambda: send(page, PROMPT))
        error = page.locator(".msg.assistant").last.locator(".error")
        assert words in error.text_content()
        assert page.locator(".typing").count() == 0  # no spinner left behind
        assert page.locator("#send").is_enabled() and page.locator("#prompt").is_editable()

    # A failed turn is not part of the conversation sent next.
    page.fill("#max-tokens", "4")
    (ok,) = chat_requests(page, lambda: send(page, "Hello"))
    assert ok.post_data_json["messages"] == [{"role": "user", "content": "Hello"}]
    assert page.locator(".msg.assistant").last.locator(".error").count() == 0


def test_stop_keeps_the_partial_answer(page):
    # Stop must land mid-answer however fast the model is: the answer can end neither
    # early (EOS ignored: the page does not send ignore_eos, so the test adds it on the
    # way out; a continued route still streams the response) nor reach the page before
    # the click (throttled to STOP_BYTES_PER_S, minutes for the whole answer).
    rewritten = []

    def ignore_eos(route):
        body = json.loads(route.request.post_data)
        rewritten.append(body["max_tokens"])
        route.continue_(post_data=json.dumps({**body, "ignore_eos": True}))

    page.fill("#max-tokens", str(STOP_TOKENS))
    page.route("**/v1/chat/completions", ignore_eos)
    try:
        with slow_download(page, STOP_BYTES_PER_S):
            send(page, "Go on.")
            answer = page.locator('[data-pane="guided"] .msg.assistant').last
            answer.locator(".text").filter(has_text=re.compile(r"\S")).wait_for()  # arriving
            # It says Stop now. Click it from the page itself: no actionability waits.
            page.evaluate("document.querySelector('#send').click()")
            page.locator("#send", has_text="Send").wait_for()
    finally:
        page.unroute("**/v1/chat/completions", ignore_eos)
    assert rewritten == [STOP_TOKENS]
    assert answer.locator(".meta").text_content() == "stopped"
    partial = answer.locator(".text").text_content()
    # The stopped turn stays in the conversation, as shown.
    page.fill("#max-tokens", "2")
    (next_request,) = chat_requests(page, lambda: send(page, "Thanks"))
    sent = next_request.post_data_json["messages"]
    assert sent[-3:] == [
        {"role": "user", "content": "Go on."},
        {"role": "assistant", "content": partial},
        {"role": "user", "content": "Thanks"},
    ]


def test_best_of_n_control(page, server):
    """Candidates > 1 sends rerank with the chosen reward model; the answer shown is
    the best candidate, and the line under it says so."""
    assert page.locator("#rerank-section").is_visible()
    assert page.locator("#rerank-model option").all_text_contents() == ["judge", "aspects"]
    page.select_option("#rerank-model", "aspects")
    page.uncheck("#compare")
    set_slider(page, "#temperature", 20)  # 1.0: candidates must differ
    page.fill("#max-tokens", "8")
    page.fill("#seed", "3")
    page.fill("#rerank-n", "3")
    try:
        (request,) = chat_requests(page, lambda: send(page, "Pick one."))
    finally:
        page.fill("#rerank-n", "1")
    assert request.post_data_json["rerank"] == {"reward_model": "aspects", "n": 3}
    answer = page.locator('[data-pane="guided"] .msg.assistant').last
    rerank = json.loads(answer.get_attribute("data-rerank"))
    assert len(rerank["candidates"]) == 3 and rerank["candidates"][0]["choice_index"] == 0
    assert answer.locator(".text").text_content() == rerank["candidates"][0]["text"]
    assert "best of 3 by aspects" in answer.locator(".meta").text_content()
    # Back to 1: no rerank.
    (plain,) = chat_requests(page, lambda: send(page, "Again."))
    assert "rerank" not in plain.post_data_json


def test_everything_came_from_the_server(server, browser_log):
    assert browser_log["requests"], "the page made no requests"
    outside = [u for u in browser_log["requests"] if not u.startswith((server.url + "/", "data:"))]
    assert outside == []

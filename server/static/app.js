// GenARM chat page: ARM sliders from /v1/models, answers streamed from
// /v1/chat/completions (fetch + ReadableStream SSE), optional side-by-side
// comparison. Plain JS, no dependencies: everything comes from this server.
"use strict";

const KEY_STORAGE = "genarm.apiKey"; // sessionStorage only: gone with the tab
const WEIGHT_STEP = 0.05;

const state = {
  model: null,
  arms: [],
  rewardModels: [], // GET /v1/models' reward-model cards (best of N)
  weights: {}, // ARM name -> slider value
  busy: false,
  controllers: [],
  history: { guided: [], unguided: [] }, // messages sent so far, per pane
  needsKey: false,
};

const $ = (selector, root = document) => root.querySelector(selector);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

const round = (x) => Math.round(x * 100) / 100;
const fmt = (x) => (x > 0 ? "+" : "") + round(x).toString();

// --- errors and the API key -------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function errorFrom(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) message = body.error.message;
  } catch (_) {
    /* not JSON: keep the status line */
  }
  return new ApiError(response.status, message);
}

function describe(err) {
  if (err instanceof ApiError) return err.status ? `Error ${err.status}: ${err.message}` : err.message;
  if (err instanceof TypeError) return `Cannot reach the server (${err.message})`;
  return err && err.message ? err.message : String(err);
}

const apiKey = () => sessionStorage.getItem(KEY_STORAGE) || "";

function authHeaders(json) {
  const headers = {};
  if (json) headers["Content-Type"] = "application/json";
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  return headers;
}

let keyPrompt = null; // one dialog for every request that hit a 401 at once

function askForKey(reason) {
  if (keyPrompt) return keyPrompt;
  const dialog = $("#key-dialog");
  const error = $("#key-error");
  error.hidden = !reason;
  error.textContent = reason || "";
  $("#key-input").value = "";
  keyPrompt = new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        keyPrompt = null;
        const key = $("#key-input").value.trim();
        if (dialog.returnValue === "ok" && key) {
          sessionStorage.setItem(KEY_STORAGE, key);
          resolve(key);
        } else {
          resolve(null);
        }
      },
      { once: true },
    );
  });
  dialog.returnValue = "";
  dialog.showModal();
  return keyPrompt;
}

// fetch() with the key; on a 401 ask for a key (saying why) and try again.
async function apiFetch(path, init = {}) {
  for (;;) {
    const response = await fetch(path, { ...init, headers: authHeaders(Boolean(init.body)) });
    if (response.status !== 401) return response;
    const err = await errorFrom(response);
    state.needsKey = true;
    $("#key-button").hidden = false;
    if ((await askForKey(apiKey() ? err.message : null)) === null) throw err;
  }
}

// --- server status and ARMs -------------------------------------------------

function setStatus(kind, text) {
  const status = $("#status");
  status.dataset.state = kind;
  status.textContent = text || kind;
  status.title = text || kind;
}

async function pollHealth() {
  try {
    const response = await fetch("/health");
    const body = await response.json().catch(() => ({}));
    if (response.ok) return setStatus("ready", "ready");
    if (body.status === "failed") return setStatus("error", `engine failed: ${body.error || "?"}`);
    setStatus("loading", "loading model…");
  } catch (err) {
    setStatus("error", "server unreachable");
  }
  setTimeout(pollHealth, 2000);
}

async function loadModels() {
  const armsBox = $("#arms");
  try {
    const response = await apiFetch("/v1/models");
    if (!response.ok) throw await errorFrom(response);
    const body = await response.json();
    const model = body.data[0];
    state.model = model.id;
    state.arms = model.arms || [];
    renderRewardModels(body.data.filter((card) => card.type === "reward_model"));
    $("#model-id").textContent = model.id;
    $("#model-id").title = model.id;
    renderArms();
    pollHealth();
  } catch (err) {
    armsBox.replaceChildren(el("p", { class: "error" }, describe(err)), retryButton());
    setStatus("error", describe(err));
  }
}

// The best-of-N control: shown only when the server has reward models.
function renderRewardModels(models) {
  state.rewardModels = models;
  $("#rerank-section").hidden = models.length === 0;
  $("#rerank-model").replaceChildren(
    ...models.map((m) =>
      el("option", { value: m.id, textContent: m.id, title: `objectives: ${m.objectives.join(", ")}` }),
    ),
  );
}

function retryButton() {
  const button = el("button", { type: "button", class: "ghost", textContent: "Retry" });
  button.addEventListener("click", () => {
    $("#arms").replaceChildren(el("p", { class: "hint" }, "Loading ARMs…"));
    loadModels();
  });
  return button;
}

function renderArms() {
  const box = $("#arms");
  box.replaceChildren();
  if (!state.arms.length) {
    box.append(el("p", { class: "hint" }, "This server has no ARMs: the plain base model."));
  }
  for (const arm of state.arms) {
    state.weights[arm.name] = arm.default_weight;
    const id = `w-${arm.name}`;
    const bounds = { min: arm.min_weight, max: arm.max_weight, step: WEIGHT_STEP };
    const slider = el("input", { type: "range", id, ...bounds, value: arm.default_weight });
    slider.setAttribute("aria-label", `weight of ${arm.name}`);
    const number = el("input", { type: "number", class: "arm-number", ...bounds, value: arm.default_weight });
    number.setAttribute("aria-label", `weight of ${arm.name} (number)`);
    const set = (value, from) => {
      if (!Number.isFinite(value)) value = state.weights[arm.name]; // typed nonsense: keep
      value = round(Math.min(arm.max_weight, Math.max(arm.min_weight, value)));
      state.weights[arm.name] = value;
      if (from !== slider) slider.value = value;
      if (from !== number) number.value = value;
      paintTrack(slider, arm, value);
      card.classList.toggle("off", value === 0);
      card.classList.toggle("negative", value < 0);
      updatePaneHeads();
    };
    slider.addEventListener("input", () => set(parseFloat(slider.value), slider));
    number.addEventListener("change", () => set(parseFloat(number.value), number));
    const card = el(
      "div",
      { class: "arm", dataset: { arm: arm.name } },
      el("div", { class: "arm-head" }, el("label", { htmlFor: id, class: "arm-name" }, arm.name), number),
      slider,
      el(
        "div",
        { class: "arm-foot" },
        el("span", {}, String(arm.min_weight)),
        el("span", { class: "arm-desc" }, arm.description || ""),
        el("span", {}, String(arm.max_weight)),
      ),
    );
    card.reset = () => set(arm.default_weight, null);
    set(arm.default_weight, null);
    box.append(card);
  }
  updatePaneHeads();
}

// The track is filled from 0 to the value, so the sign reads at a glance.
function paintTrack(slider, arm, value) {
  const span = arm.max_weight - arm.min_weight || 1;
  const at = (x) => `${(100 * (Math.min(arm.max_weight, Math.max(arm.min_weight, x)) - arm.min_weight)) / span}%`;
  slider.style.setProperty("--lo", at(Math.min(0, value)));
  slider.style.setProperty("--hi", at(Math.max(0, value)));
}

function weightsSummary(weights) {
  const active = Object.entries(weights).filter(([, w]) => w !== 0);
  if (!active.length) return "all weights 0";
  return active.map(([name, w]) => `${name} ${fmt(w)}`).join(" · ");
}

function updatePaneHeads() {
  $('[data-pane="guided"] .pane-weights').textContent = weightsSummary(state.weights);
}

// --- streaming --------------------------------------------------------------

// POST a streamed chat request; onDelta(text) per piece. Resolves with the
// echoed weights, finish reason and usage once the server sends [DONE].
async function streamChat(body, onDelta, signal) {
  const response = await apiFetch("/v1/chat/completions", {
    method: "POST",
    body: JSON.stringify(body),
    signal,
  });
  if (!response.ok) throw await errorFrom(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const result = { weights: null, finish: null, usage: null };
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let match;
    while ((match = /\r?\n\r?\n/.exec(buffer))) {
      const event = buffer.slice(0, match.index);
      buffer = buffer.slice(match.index + match[0].length);
      const data = event
        .split(/\r?\n/)
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (!data) continue;
      if (data === "[DONE]") return result;
      const chunk = JSON.parse(data);
      // After the 200 the server reports errors in-band, as OpenAI does.
      if (chunk.error) throw new ApiError(0, chunk.error.message);
      if (chunk.reward_weights) result.weights = chunk.reward_weights;
      if (chunk.usage) result.usage = chunk.usage;
      if (chunk.rerank) result.rerank = chunk.rerank;
      for (const choice of chunk.choices || []) {
        if (choice.delta && choice.delta.content) onDelta(choice.delta.content);
        if (choice.finish_reason) result.finish = choice.finish_reason;
      }
    }
  }
  throw new ApiError(0, "the connection closed before the answer was complete");
}

// --- conversation -----------------------------------------------------------

const comparing = () => $("#compare").checked;

function activePanes() {
  return comparing() ? ["unguided", "guided"] : ["guided"];
}

function paneWeights(pane) {
  if (pane === "guided") return { ...state.weights };
  return Object.fromEntries(state.arms.map((arm) => [arm.name, 0]));
}

function transcript(pane) {
  return $(`[data-pane="${pane}"] .transcript`);
}

function scrollDown(box) {
  box.scrollTop = box.scrollHeight;
}

function readSettings() {
  const maxTokensText = $("#max-tokens").value.trim();
  const seedText = $("#seed").value.trim();
  const settings = { temperature: parseFloat($("#temperature").value) };
  // Sent as typed: the server says in words what is wrong with a bad value.
  if (maxTokensText !== "") settings.max_tokens = Number(maxTokensText);
  if (seedText !== "") settings.seed = Number(seedText);
  else if (comparing()) settings.seed = Math.floor(Math.random() * 2 ** 31); // same for both sides
  const candidates = Number($("#rerank-n").value);
  if (state.rewardModels.length && candidates > 1) {
    settings.rerank = { reward_model: $("#rerank-model").value, n: candidates };
  }
  return settings;
}

async function ask(pane, text, settings, signal) {
  const box = transcript(pane);
  const system = $("#system").value.trim();
  const messages = [
    ...(system ? [{ role: "system", content: system }] : []),
    ...state.history[pane],
    { role: "user", content: text },
  ];
  const userMsg = el("div", { class: "msg user" }, el("div", { class: "text" }, text));
  const answer = el("div", { class: "text" });
  const meta = el("div", { class: "meta" });
  const typing = el("div", { class: "typing", title: "waiting for the first token" }, el("i"), el("i"), el("i"));
  const botMsg = el("div", { class: "msg assistant pending" }, answer, typing, meta);
  box.append(userMsg, botMsg);
  scrollDown(box);

  const weights = paneWeights(pane);
  const body = {
    model: state.model,
    messages,
    stream: true,
    stream_options: { include_usage: true },
    reward_weights: weights,
    ...settings,
  };
  const started = performance.now();
  let text_ = "";
  try {
    const result = await streamChat(
      body,
      (piece) => {
        if (!text_) botMsg.classList.remove("pending");
        text_ += piece;
        answer.textContent = text_;
        scrollDown(box);
      },
      signal,
    );
    botMsg.dataset.weights = JSON.stringify(result.weights);
    const parts = [weightsSummary(result.weights || {})];
    if (result.rerank) {
      const best = result.rerank.candidates[0];
      const count = result.rerank.candidates.length;
      parts.push(`best of ${count} by ${result.rerank.reward_model} (score ${best.score.toFixed(2)})`);
      botMsg.dataset.rerank = JSON.stringify(result.rerank);
    }
    if (result.usage) parts.push(`${result.usage.completion_tokens} tokens`);
    parts.push(`${((performance.now() - started) / 1000).toFixed(1)} s`);
    if (settings.seed !== undefined) parts.push(`seed ${settings.seed}`);
    if (result.finish === "length") parts.push("max tokens reached");
    meta.textContent = parts.join(" · ");
    botMsg.classList.add("done");
    state.history[pane].push({ role: "user", content: text }, { role: "assistant", content: text_ });
  } catch (err) {
    if (err.name === "AbortError") {
      meta.textContent = "stopped";
      botMsg.classList.add("done");
      state.history[pane].push({ role: "user", content: text }, { role: "assistant", content: text_ });
    } else {
      // Not added to the history: the next message is sent without this turn.
      botMsg.classList.add("failed");
      userMsg.classList.add("failed");
      botMsg.append(el("div", { class: "error", role: "alert" }, describe(err)));
    }
  } finally {
    botMsg.classList.remove("pending");
    typing.remove();
    scrollDown(box);
  }
}

function setBusy(busy) {
  state.busy = busy;
  const send = $("#send");
  send.textContent = busy ? "Stop" : "Send";
  send.classList.toggle("stop", busy);
  $("#compare").disabled = busy;
  $("#new-chat").disabled = busy;
  document.body.dataset.busy = String(busy);
}

async function submit() {
  if (state.busy) {
    for (const controller of state.controllers) controller.abort();
    return;
  }
  const prompt = $("#prompt");
  const text = prompt.value.trim();
  if (!text) return;
  prompt.value = "";
  $("#empty").hidden = true;
  const settings = readSettings();
  state.controllers = activePanes().map(() => new AbortController());
  setBusy(true);
  try {
    await Promise.all(
      activePanes().map((pane, i) => ask(pane, text, settings, state.controllers[i].signal)),
    );
  } finally {
    state.controllers = [];
    setBusy(false);
    prompt.focus();
  }
}

function newChat() {
  state.history = { guided: [], unguided: [] };
  for (const pane of ["guided", "unguided"]) transcript(pane).replaceChildren();
  $("#empty").hidden = false;
}

// --- wiring -----------------------------------------------------------------

function init() {
  const temperature = $("#temperature");
  const showTemperature = () => {
    $("#temperature-value").textContent = parseFloat(temperature.value).toFixed(2);
  };
  temperature.addEventListener("input", showTemperature);
  showTemperature();

  $("#composer").addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  $("#prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      if (!state.busy) submit();
    }
  });
  $("#new-chat").addEventListener("click", newChat);
  $("#compare").addEventListener("change", () => {
    const on = comparing();
    $("#panes").dataset.compare = String(on);
    $('[data-pane="unguided"]').hidden = !on;
    newChat(); // the two sides must share their whole conversation
  });
  $("#reset-weights").addEventListener("click", () => {
    for (const card of document.querySelectorAll("#arms .arm")) card.reset();
  });
  $("#key-button").addEventListener("click", async () => {
    if ((await askForKey(null)) !== null) loadModels();
  });
  if (apiKey()) $("#key-button").hidden = false;
  loadModels();
}

document.addEventListener("DOMContentLoaded", init);

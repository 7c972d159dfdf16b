# MedCore: `make run` starts the console on the demo workspace; `make test` runs every test tier but `gpu`.
# Both are idempotent: the venv is rebuilt only when pyproject.toml changes.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.medcore-installed
HOST ?= 127.0.0.1
PORT ?= 8501
export MEDCORE_HOME ?= $(CURDIR)/workspace
# No telemetry, no hub downloads: PHI never leaves and nothing is fetched at run time.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export STREAMLIT_BROWSER_GATHER_USAGE_STATS := false

.PHONY: install run test test-fast browser demo lint bench clean lock lab

install: $(STAMP)

# torch first, pinned: on these machines 2.13.0 is a CPU build on local disk; anything else pulls CUDA.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	$(PY) -m medcore.deepspeed_ops  # gcc-built ops now, not inside the first run (about a minute on 2 cores)
	touch $(STAMP)

demo: install
	test -f $(MEDCORE_HOME)/datasets/demo_notes.jsonl || $(VENV)/bin/medcore demo

# Beyond 127.0.0.1 only with logins configured (medcore users add): otherwise anyone reaching the port is admin.
run: demo
	$(PY) -m medcore.access.bind $(HOST)
	$(VENV)/bin/streamlit run app/main.py --server.address $(HOST) --server.port $(PORT) --server.headless true

# JupyterLab on notebooks/, reading $(MEDCORE_HOME); bound to 127.0.0.1 with a random token (in the URL it prints).
# Not a MedCore dependency: installed into the venv on first use, at the version constraints.txt pins. No news feed,
# update check or PyPI extension manager, so the server fetches nothing.
LAB_PORT ?= 8888
lab: demo
	$(PY) -c "import jupyterlab" 2>/dev/null || $(PY) -m pip install -q -c constraints.txt jupyterlab
	$(VENV)/bin/jupyter lab --no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port=$(LAB_PORT) \
		--ServerApp.root_dir=notebooks --LabApp.news_url=None --LabApp.extension_manager=readonly \
		--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate \
		$(if $(filter 0,$(shell id -u)),--allow-root)

# Debian's chromium drives the real-browser tests (no browser download); shellcheck lints the generated launchers.
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ] || [ ! -x /usr/bin/shellcheck ]; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver shellcheck >/dev/null; \
		else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver shellcheck >/dev/null; fi; \
	fi

test: install browser
	$(PY) -m pytest -m "not gpu" tests

test-fast: install
	$(PY) -m pytest -m "not gpu and not slow" tests

lint: install
	$(VENV)/bin/ruff check medcore app tests bench

bench: install
	for b in bench/*.py; do $(PY) $$b || exit 1; done

# Re-pin constraints.txt to what is installed now (after changing pyproject.toml and passing the tests).
lock: install
	{ echo "# Versions the test suite last passed with (pip freeze of a fresh 'make install', torch and medcore excluded)."; \
	  echo "# make install applies them with pip -c; regenerate after a dependency change: make lock"; \
	  $(PY) -m pip freeze --exclude-editable | grep -viE '^(torch|medcore)[= ]' | grep -v '^-e'; } > constraints.txt

clean:
	rm -rf $(VENV) test-artifacts

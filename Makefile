# One command for the demo, one for the tests; both set everything up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# The CPU build of torch; on a GPU machine install the CUDA build of your choice instead (see README).
TORCH  ?= torch==2.13.0

.PHONY: install demo test test-all bench peer clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install -q --disable-pip-version-check -e ".[test]"
	touch $@

install: $(VENV)/.installed

# 4 minutes where bf16 is native (a GPU, AVX-512-BF16, AMX), 8 on an fp32-only CPU (pggan.presets.demo_budget)
DEMO_BUDGET = $(shell $(PY) -c "from pggan.presets import demo_budget; print(demo_budget())")

demo: install
	$(VENV)/bin/pggan train --preset demo --budget $(DEMO_BUDGET)
	$(VENV)/bin/pggan plot "$$(ls -d runs/*-demo | tail -n 1)"

test: install
	$(VENV)/bin/ruff check src tests tools
	$(PY) -m pytest -q

test-all: install
	$(PY) -m pytest -q -m "slow or not slow"

bench: install
	$(VENV)/bin/pggan bench

# pro-gan-pth's source in peer/ (ignored by git, never a dependency), for tools/peer_bench.py
peer: install
	$(PY) -m pip download -q --disable-pip-version-check --no-deps pro-gan-pth==3.4 -d build/peer
	mkdir -p peer && tar xzf build/peer/pro-gan-pth-3.4.tar.gz -C peer --strip-components=1

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache

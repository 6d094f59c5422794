# The two commands of the README: `make demo` (main job) and `make test` (test suite).
# Both run setup first; setup is idempotent and takes seconds once done.
PY := .venv/bin/python
WORKDIR ?= runs/demo
CONFIG ?= experiments/configs/tiny.py

.PHONY: setup demo test clean
setup:
	@scripts/setup.sh

demo: setup
	$(PY) -m experiments.main --config=$(CONFIG) --workdir=$(WORKDIR) < /dev/null

test: setup
	$(PY) -m pytest -q tests < /dev/null

clean:
	rm -rf .venv .cache runs

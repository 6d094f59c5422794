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

# Two pytest workers, one test file each at a time (module fixtures stay in one process): much of
# the suite is XLA compiling, which keeps one core busy, so a second worker uses the other
# (1186.7 s -> 944.7 s on the 2-core VM, docs/performance_history.md). The slowest 15 are printed.
test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15 tests < /dev/null

clean:
	rm -rf .venv .cache runs

# vlbench: make setup | bench [MODEL=m] [DATASET=d] | test | leaderboard | perf
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
VLBENCH := $(VENV)/bin/vlbench
RESULTS ?= results
MODEL ?=
DATASET ?= synthetic
SUITE ?= default
RUN_ARGS ?=

.PHONY: setup bench test leaderboard check baseline clean-results

# Idempotent: re-installs only when pyproject.toml changed since the last install.
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# make bench: the default suite on the embedded default (offline).
# make bench MODEL=clip [DATASET=flickr8k]: one model, every task the dataset offers.
bench: setup
ifeq ($(strip $(MODEL)),)
	@$(VLBENCH) sweep --suite $(SUITE) --results $(RESULTS) $(RUN_ARGS)
else
	@$(VLBENCH) run --model $(MODEL) --dataset $(DATASET) --results $(RESULTS) $(RUN_ARGS)
endif
	@$(VLBENCH) leaderboard --results $(RESULTS) --out leaderboard/index.html

test: setup
	$(PY) -m pytest -q

leaderboard: setup
	$(VLBENCH) leaderboard --results $(RESULTS) --out leaderboard/index.html

# Regression gate against the committed baseline of $(SUITE) (run make bench first).
check: setup
	$(VLBENCH) check --baseline benchmarks/baselines/$(SUITE).json --results $(RESULTS)

# Write a new baseline on purpose, from the latest records of $(SUITE).
baseline: setup
	$(VLBENCH) baseline update --suite $(SUITE) --results $(RESULTS)

clean-results:
	rm -rf $(RESULTS) leaderboard/index.html

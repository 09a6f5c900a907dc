# Two commands: `make run` and `make test`. Both create/refresh .venv first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
# One TensorFlow package, chosen deliberately: the CPU wheel unless an NVIDIA driver is present.
TF_EXTRA ?= $(if $(shell command -v nvidia-smi 2>/dev/null),gpu,cpu)
STAMP  := $(VENV)/.installed-$(TF_EXTRA)
PIPELINE ?= cifar10_resnet
KEDRO_ENV ?=
# `make run` trains within this many minutes (the recipe's schedule stretched to fit, README
# "Training budgets"): a first real test accuracy in about a quarter of an hour on a laptop.
# `make run-full` (= `make run BUDGET_MINUTES=`) trains the whole recipe: about 3 hours on 2 CPU cores.
# The smoke env (`make run KEDRO_ENV=smoke`, `make smoke`) keeps its one short epoch: no budget there.
BUDGET_MINUTES ?= 12

export KEDRO_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: install browser postgres lint format run run-full serve smoke test test-torch test-fast viz mlflow-ui benchmarks gpu-kit zoo reproduce clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run 'make PYTHON=python3 ...'"; exit 1; }
	@# Switching TF_EXTRA (cpu <-> gpu) starts a fresh venv: never two TensorFlow packages side by side.
	if ls $(VENV)/.installed-* >/dev/null 2>&1 && ! ls $(VENV)/.installed-$(TF_EXTRA) >/dev/null 2>&1; then rm -rf $(VENV); fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[$(TF_EXTRA),dev]"
	rm -f $(VENV)/.installed-*
	touch $@

run: install
	$(BIN)/kedro run --pipelines=$(PIPELINE) $(if $(KEDRO_ENV),--env=$(KEDRO_ENV)) $(if $(and $(BUDGET_MINUTES),$(filter-out smoke,$(or $(KEDRO_ENV),base))),--params=training.budget.minutes=$(BUDGET_MINUTES))

run-full: install
	$(MAKE) run BUDGET_MINUTES=

# A logged classifier over HTTP, from any shell (the venv need not be active):
#   make serve RUN=<run_id> [DATASET=cifar10 ARCH=resnet PORT=5001]   or   make serve MODEL=runs:/<run_id>/<name>
# then POST /invocations (README, "Use a trained model outside Kedro"). The run is looked up in ./mlflow.db
# unless MLFLOW_TRACKING_URI names another store.
DATASET ?= cifar10
ARCH    ?= resnet
PORT    ?= 5001
MODEL   ?= $(if $(RUN),runs:/$(RUN)/$(DATASET)_$(ARCH)_classifier)
serve: install
	@test -n "$(MODEL)" || { echo "Name the model: make serve RUN=<run_id> (the MLflow UI lists runs: make mlflow-ui), or MODEL=runs:/<run_id>/<dataset>_<arch>_classifier"; exit 2; }
	MLFLOW_TRACKING_URI="$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db}" $(BIN)/python -m convbench.serving "$(MODEL)" --port $(PORT)

smoke: install
	$(BIN)/kedro run --pipelines=$(PIPELINE) --env=smoke

# The whole suite under TensorFlow, then the tests marked `backends` again under JAX (the dev extra installs it);
# the tests marked `torch` are `make test-torch`'s.
# TEST_WORKERS pytest processes (pytest-xdist) share the test files: a `kedro run` keeps about one core busy
# (Python, tracing, plotting), so two processes on two cores take about two thirds of the time of one.
# They get whole files, end-to-end files first (tests/conftest.py): no file of several minutes starts last.
# The tests marked `timed` (a ratio of two timings) run alone afterwards: beside a second process they measure it.
TEST_WORKERS ?= 2
test: install browser postgres lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not timed and not torch"
	$(BIN)/python -m pytest -m timed
	KERAS_BACKEND=jax $(BIN)/python -m pytest -m backends

# The `backends` tests and the e2e backend runs under PyTorch, where it is installed (the `torch` extra; not in CI).
test-torch: install
	@$(BIN)/python -c "import torch" 2>/dev/null || { echo "PyTorch is not installed: $(BIN)/pip install -c constraints.txt -e '.[$(TF_EXTRA),torch]' (README, Keras backends)"; exit 2; }
	KERAS_BACKEND=torch $(BIN)/python -m pytest -m backends
	$(BIN)/python -m pytest -m torch

# The quick lane while editing: lint + every test but the end-to-end Kedro runs (`-m "not e2e"`).
test-fast: install lint
	$(BIN)/python -m pytest -m "not e2e"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Rewrites the sources: import order, lint fixes, formatting.
format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Headless Chromium for the tests of kedro viz and the MLflow UI: Debian's package, installed with
# apt-get where this user may; elsewhere those tests skip and say why.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
	      || echo "Could not install chromium: the browser tests will be skipped"; \
	  else echo "No chromium and no root apt-get: the browser tests will be skipped (apt-get install chromium)"; fi; }

# A real PostgreSQL server for the tests of shared Optuna studies and MLflow tracking servers: Debian's
# package, installed with apt-get where this user may; the tests start their own throw-away cluster
# (tests/postgres.py). Elsewhere those tests skip and say why.
postgres:
	@command -v initdb >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null \
	      || echo "Could not install postgresql: the PostgreSQL tests will be skipped"; \
	  else echo "No PostgreSQL server and no root apt-get: the PostgreSQL tests will be skipped (apt-get install postgresql)"; fi; }

viz: install
	$(BIN)/kedro viz run

mlflow-ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db

# The GPU kit (benchmarks/gpu): Keras' wheels for CPython 3.11-3.13 and the frozen recipes, git-ignored, for a
# GPU machine with PyTorch and JAX but no TensorFlow. There: bash benchmarks/gpu/run.sh (README of benchmarks/).
gpu-kit: install
	$(BIN)/python benchmarks/gpu/build_kit.py

benchmarks: install
	$(BIN)/python benchmarks/bench_parse_cifar.py
	$(BIN)/python benchmarks/bench_parse_fer.py
	$(BIN)/python benchmarks/bench_training_throughput.py
	$(BIN)/python benchmarks/bench_architectures.py
	$(BIN)/python benchmarks/bench_lookahead.py
	$(BIN)/python benchmarks/bench_dask_runner.py
	$(BIN)/python benchmarks/bench_pipeline_registry.py

# The zoo at an equal training budget (benchmarks/bench_zoo.py): one `kedro run` per CIFAR-10 architecture,
# then the leaderboard, copied to benchmarks/results/. Resumes: architectures already run at this budget are skipped.
ZOO_MINUTES ?= 5
zoo: install
	$(BIN)/python benchmarks/bench_zoo.py --minutes $(ZOO_MINUTES)

# Every published result of conf/base/parameters_reproduce.yml, trained and checked (README, "Reproducing
# published results"); needs every claim's dataset in data/01_raw/.
reproduce: install
	$(BIN)/kedro run --pipelines=reproduce

clean-venv:
	rm -rf $(VENV)

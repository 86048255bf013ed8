# One way to run things, for people and CI alike.
#   make test   services up, models fetched, every test (the README's test command)
#   make lint   rustfmt and clippy, warnings are errors
#   make bench  the benchmarks (figures are ratios or rates measured in the same run)
#   make bench-local-sfn  embedded mode against the npm package aws-local-stepfunctions
#   make demo   the rider-photo batch in embedded mode (the README's first command)
#   make fuzz   the fuzz targets: expression layer and whole path (not part of CI)
#   make train-sunglasses      re-train the shipped sunglasses classifier from scratch (torch; not CI)
#   make crossval-sunglasses   the same with 5 person-held-out folds and a fresh calibration
#   make calibrate-similarity  re-measure the cosine -> Similarity calibration pairs (not CI)

CARGO ?= cargo
MODELS_DIR ?= $(or $(MAPFLEET_MODELS_DIR),$(CURDIR)/mapfleet-data/models)
export MAPFLEET_MODELS_DIR := $(MODELS_DIR)
FUZZ_SECONDS ?= 600

.PHONY: test lint bench bench-local-sfn demo fuzz services models train-sunglasses crossval-sunglasses calibrate-similarity

test: services models
	$(CARGO) test --workspace --lib --bins --tests

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The photo bench runs pinned to one core (built first, so that only the run is pinned), next
# to the Python baseline when its venv exists (loadtest/python-baseline/setup_python_baseline.sh).
BENCH_CPU ?= $(shell echo $$(( $$(nproc) - 1 )))
export MAPFLEET_PYTHON ?= $(wildcard $(HOME)/.cache/py-baseline-venv/bin/python)

bench: services models
	$(CARGO) bench -p coordinator --bench map_pass
	$(CARGO) bench -p worker --bench photo_pipeline --no-run
	taskset -c $(BENCH_CPU) $(CARGO) bench -p worker --bench photo_pipeline
	$(MAKE) bench-local-sfn

# The 10,000-item Map of Pass states, whole processes, both pinned to the same core (Node.js
# and npm: loadtest/local-sfn/setup.sh installs the pinned package, or Debian's nodejs first).
bench-local-sfn:
	$(CARGO) build --release -p mapfleet --bin mapfleet
	python3 loadtest/local-sfn/compare.py --cpu $(BENCH_CPU) \
		--mapfleet $${CARGO_TARGET_DIR:-target}/release/mapfleet \
		--local-sfn-dir "$$(bash loadtest/local-sfn/setup.sh)"

demo: models
	$(CARGO) run --release -q -p mapfleet --bin mapfleet -- demo

services:
	bash .ci/services.sh

models:
	bash deploy/setup-models.sh "$(MODELS_DIR)"

train-sunglasses: models
	bash deploy/face-training/run.sh sunglasses

crossval-sunglasses: models
	bash deploy/face-training/run.sh sunglasses-crossval

calibrate-similarity: models
	bash deploy/face-training/run.sh similarity

fuzz:
	cd coordinator/engine && for t in path_parse template_parse_eval intrinsic_parse_eval jsonata_parse_eval execution_run; do \
		dict=fuzz/intrinsics.dict; len=4096; [ $$t = path_parse ] && dict=fuzz/paths.dict; \
		[ $$t = jsonata_parse_eval ] && dict=fuzz/jsonata.dict; \
		[ $$t = execution_run ] && dict=fuzz/asl.dict && len=16384; \
		mkdir -p fuzz/corpus/$$t; \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -s none -a $$t fuzz/corpus/$$t fuzz/seeds/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -dict=$$dict -max_len=$$len -rss_limit_mb=2048 -timeout=10 || exit 1; \
	done

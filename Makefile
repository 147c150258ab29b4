# fsm2kit: the two commands of the README do all set-up on a fresh machine.
#   make demo    S1SFQ-middle with sam2-tiny on the bundled CHAOS case (WEIGHTS=random offline);
#                installs the runtime only (scripts/install.sh's default)
#   make test    the test suite (what CI runs), with the 25 slowest tests listed; installs the dev
#                extra (notebooks, sweeps, DICOM, browser test, pytest)
#   make test-fast  the suite less the tests marked slow (SAM2 end to end, notebooks, workers): minutes
VENV ?= .venv
PY := $(VENV)/bin/python
MODEL ?= sam2-tiny
WEIGHTS ?=
IMAGE_SIZE ?=
DEMO_OUT ?= outputs/demo
PYTEST_ARGS ?=

.PHONY: install install-dev demo test test-fast bench clean

install: $(VENV)/.fsm2kit-installed

install-dev: $(VENV)/.fsm2kit-installed-dev

$(VENV)/.fsm2kit-installed: pyproject.toml scripts/install.sh
	bash scripts/install.sh $(VENV)

$(VENV)/.fsm2kit-installed-dev: pyproject.toml scripts/install.sh
	bash scripts/install.sh $(VENV) dev

# (a rerun replaces $(DEMO_OUT) with --overwrite; offline, the error says to pass WEIGHTS=FILE)
demo: install
	@$(VENV)/bin/fsm2kit run --episodes data/examples/chaos_t2spir_case1_liver \
		--setting S1SFQ --order middle --model $(MODEL) \
		$(if $(WEIGHTS),--checkpoint $(WEIGHTS),) $(if $(IMAGE_SIZE),--image-size $(IMAGE_SIZE),) --out $(DEMO_OUT) --overwrite \
	|| { st=$$?; [ $$st -eq 130 ] || echo "make demo: failed (exit $$st). No internet to download the \
	$(MODEL) checkpoint? Pass a local checkpoint file: make demo WEIGHTS=FILE (e.g. WEIGHTS=sam2_hiera_tiny.pt), \
	or WEIGHTS=random for a smoke run whose numbers mean nothing." >&2; exit $$st; }

test: install-dev
	TQDM_DISABLE=1 $(PY) -m pytest -q --durations=25 $(PYTEST_ARGS)

test-fast: install-dev
	TQDM_DISABLE=1 $(PY) -m pytest -q -m "not slow" --durations=25 $(PYTEST_ARGS)

bench: install
	$(PY) benchmarks/encode_once.py

clean:
	rm -rf outputs .pytest_cache

# Quick start: `make demo`, then `make test`. Both set up .venv first.
VENV := .venv
STAMP := $(VENV)/.deepwatch-setup
DW := $(VENV)/bin/deepwatch
DEMO_MODEL := var/models/demo-detector

.PHONY: setup demo test test-fast clean

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(DW) detectors train-demo --out $(DEMO_MODEL)
	$(DW) campaign run examples/demo.yaml --report var/demo-report.json

test: setup
	$(VENV)/bin/python -m pytest -q -ra

test-fast: setup
	$(VENV)/bin/python -m pytest -q -ra -m "not slow"

clean:
	rm -rf var test-artifacts .pytest_cache

# The two commands a newcomer needs: `make demo` (the toy tutorial) and `make test`.
# Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev,bsds-reference,efficientnet]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pixelgroup demo --config configs/toy.yaml --output runs/demo --threads 1

test: $(STAMP)
	$(VENV)/bin/ruff check pixelgroup tests benchmarks examples
	$(VENV)/bin/ruff format --check pixelgroup tests benchmarks examples
	$(VENV)/bin/mypy pixelgroup
	$(PY) -m pytest -q

clean:
	rm -rf runs .pytest_cache .ruff_cache .mypy_cache

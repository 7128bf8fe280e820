# The two commands a newcomer needs: `make demo` (the toy tutorial) and `make test`.
# Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test docs clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev,bsds-reference,efficientnet,export,docs]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pixelgroup demo --config toy --output runs/demo

test: $(STAMP)
	$(VENV)/bin/ruff check pixelgroup tests benchmarks experiments examples
	$(VENV)/bin/ruff format --check pixelgroup tests benchmarks experiments examples
	$(VENV)/bin/mypy pixelgroup
	$(PY) -m pytest -q
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -d build/site

# the API reference and docs/*.md as a site on http://127.0.0.1:8000 (rebuilt on every edit)
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

clean:
	rm -rf runs .pytest_cache .ruff_cache .mypy_cache

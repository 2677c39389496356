# Each target does its own set-up: a fresh clone needs nothing but python3.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lab bench compiled clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

demo: $(STAMP)
	rm -rf reports/latest
	$(VENV)/bin/repro-kit run --out reports/latest

test: $(STAMP)
	MPLBACKEND=Agg $(PY) -m pytest -q

# As root (containers, these machines) JupyterLab needs --allow-root; as a user it must not be forced.
# Lab's root is the checkout, so its file browser lists runs/ (where the CLI, the panel and the
# notebooks record) and reports/ beside notebooks/, which it opens on.
lab: $(STAMP)
	$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) --ServerApp.root_dir=. \
		--LabApp.default_url=/lab/tree/notebooks

# Measures the compiled build (made first, in build/compiled, where this machine can) or else pure Python.
bench: $(STAMP)
	$(PY) -m benchmarks

# The optional compiled build of the model's hot modules (mypyc; needs a C compiler and the Python headers):
# REPRO_KIT_COMPILED=build/compiled in the environment makes the kit use it, until the sources change.
compiled: $(STAMP)
	$(PY) -c "import sys; from repro_kit._compiled import main; sys.exit(main(['build/compiled']))"

clean:
	rm -rf $(VENV) reports/ runs/ build/

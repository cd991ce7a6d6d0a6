# The two set-up commands of the README: `make demo` and `make test`.
# Both create .venv on first use and install the CPU build of torch first (pinned), so pip never
# pulls a multi-GB CUDA build; the package itself only asks for torch>=2.1.
PYTHON ?= python3
VENV := .venv
TORCH_PIN ?= torch==2.13.0

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet "$(TORCH_PIN)"
	$(VENV)/bin/pip install --quiet -e ".[test]"
	touch $@

.PHONY: install demo test
install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/classanchor demo

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q -n 2 -p no:cacheprovider

# Maintainer entry points. `make test` is all a fresh checkout needs.

VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?= -n 2

# Newest runnable Python 3.13 .. 3.10 from pyenv or PATH, else python3.
# Each candidate is run once, because a pyenv shim can exist on PATH and
# still refuse to run a version.
define find_python
for v in 3.13 3.12 3.11 3.10; do \
  for p in $$(pyenv root 2>/dev/null)/versions/$$v*/bin/python$$v $$(command -v python$$v); do \
    if [ -x "$$p" ] && "$$p" -c 'import venv, ensurepip' >/dev/null 2>&1; then echo "$$p"; exit 0; fi; \
  done; \
done; echo python3
endef

.PHONY: test bench demo lint clean venv

venv: $(VENV)/.installed

$(VENV)/.installed: requirements-test.txt
	@test -x $(PY) || { base=$$($(find_python)); echo "creating $(VENV) with $$base"; "$$base" -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-test.txt
	@touch $@

test: venv
	$(PY) -m pytest $(PYTEST_ARGS) tests

bench: venv
	$(PY) bench/run.py $(BENCH_ARGS)

demo: venv
	$(PY) demo/run.py

lint: venv
	$(PY) -m compileall -q -x '/(\.venv|\.cache|build|dist)/' .

clean:
	rm -rf $(VENV) .cache build dist .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

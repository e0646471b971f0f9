# The two commands of the README:
#   make course   set up .venv, execute the lectures and build the book
#   make test     set up .venv and run the whole test suite (what .ci/run runs)

# The interpreter that builds .venv: python3, or /usr/bin/python3 when root's is private (.ci/python)
PYTHON ?= $(shell bash .ci/python)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
REQS   := requirements.txt requirements-base.txt requirements-dev.txt requirements-jax.txt pyproject.toml

.PHONY: course test book lint clean

course: $(STAMP)
	$(PY) -m coursetools build $(if $(OFFLINE),--offline) $(if $(MODE),--mode $(MODE))

test: $(STAMP)
	bash .ci/system-packages
	$(PY) -m pytest -n auto

book: course

lint: $(STAMP)
	$(VENV)/bin/pre-commit run --all-files

# (Re)install when a requirements file changes; reuse the environment otherwise.
# JAX is installed too: the suite runs the Keras notebooks once on the JAX backend.
$(STAMP): $(REQS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt -r requirements-jax.txt
	$(PY) -m pip install --quiet --no-deps -e .  # the autograder and coursetools packages
	touch $(STAMP)

clean:
	rm -rf build

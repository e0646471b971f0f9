# The two commands of the README:
#   make course   set up .venv, execute the lectures and build the book
#   make test     set up .venv and run the whole test suite (what .ci/run runs)
# They are the student repository's Makefile (student/Makefile), with two additions here:
# the interpreter that builds .venv (python3, or /usr/bin/python3 when root's is private:
# .ci/python), and the autograder and coursetools packages installed into it, with a
# wheelhouse of their declared dependencies (tests/test_install.py installs `pip install .`
# from it, offline, into a new environment), plus the instructor-only `cluster` extra (Dask,
# autograder/requirements-cluster.txt: not in pylock.toml, which the student repository shares).

PYTHON        ?= $(shell bash .ci/python)
EXTRA_REQS    := pyproject.toml autograder/requirements-cluster.txt
EXTRA_INSTALL  = $(PY) -m pip install --quiet --no-deps -e . \
                 && $(PY) -m pip install --quiet -r autograder/requirements-cluster.txt \
                 && $(PY) -m pip wheel --quiet --wheel-dir $(VENV)/wheelhouse ".[book]"

include student/Makefile

# make test-colab: the notebooks and the integrity suite once more, in .venv-colab, with Colab's
# Python and Colab's versions of the notebooks' packages (colab-constraints.txt; refresh
# with `python -m coursetools colab-constraints`). The JAX-backend runs are skipped there.
COLAB_PYTHON ?= $(shell bash .ci/python-colab)
COLAB_VENV   := .venv-colab
COLAB_PY     := $(COLAB_VENV)/bin/python
# Not the checked outputs (nbval): they record the pinned versions' exact output. Not the
# behaviour pass rates either: the integrity suite's grading of every assignment covers Colab.
COLAB_TESTS  := tests/test_notebook_execution.py tests/test_assignments.py -k "not pass_rates"

.PHONY: test-colab
test-colab: $(COLAB_VENV)/.installed
	bash .ci/system-packages
	COURSE_RUN_DIR=$(CURDIR)/build/run-colab $(COLAB_PY) -m pytest -n auto $(COLAB_TESTS)

$(COLAB_VENV)/.installed: $(REQS) colab-constraints.txt
	test -x $(COLAB_PY) || $(COLAB_PYTHON) -m venv $(COLAB_VENV)
	$(COLAB_PY) -m pip install --quiet --upgrade pip
	$(COLAB_PY) -m pip install --quiet -r requirements.txt -r requirements-test.txt -c colab-constraints.txt
	$(COLAB_PY) -m pip install --quiet --no-deps -e .
	touch $@

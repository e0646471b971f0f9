# The two commands of the README:
#   make course   set up .venv, execute the lectures and build the book
#   make test     set up .venv and run the whole test suite (what .ci/run runs)
# They are the student repository's Makefile (student/Makefile), with two additions here:
# the interpreter that builds .venv (python3, or /usr/bin/python3 when root's is private:
# .ci/python), and the autograder and coursetools packages installed into it, with a
# wheelhouse of their declared dependencies (tests/test_install.py installs `pip install .`
# from it, offline, into a new environment).

PYTHON        ?= $(shell bash .ci/python)
EXTRA_REQS    := pyproject.toml
EXTRA_INSTALL  = $(PY) -m pip install --quiet --no-deps -e . \
                 && $(PY) -m pip wheel --quiet --wheel-dir $(VENV)/wheelhouse ".[book]"

include student/Makefile

# Everything runs from a virtual environment this Makefile makes: only python3 and make needed.
PYTHON ?= python3
VENV ?= .venv
OLDEST ?= .venv-oldest
PY := $(VENV)/bin/python
CHECKED := xsguard plugins/xsguard plugins/vm-pre-start/50xsguard plugins/vm-pre-migrate/50xsguard \
	plugins/vm-pre-resume/50xsguard packaging/xsguard-cli packaging/xsguard-rrdd

.PHONY: all demo demo-2013 test test-oldest test-py36 lint bench rpm dist clean

all: lint test

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

$(OLDEST)/.installed: pyproject.toml
	$(PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/python -m pip install -q --upgrade pip
	$(OLDEST)/bin/python -m pip install -q -e '.[test]' 'structlog==21.5.0' 'tenacity==8.2.2'
	touch $@

demo: $(VENV)/.installed
	$(PY) -m xsguard demo

# the suite under branch coverage (the hooks, plugin and commands the simulated hosts run included):
# prints the report and fails below [tool.coverage.report] fail_under
test: $(VENV)/.installed
	rm -f .coverage .coverage.*
	$(PY) -m coverage run -m pytest -q
	$(PY) -m coverage combine -q
	$(PY) -m coverage report

# the 2013 XenServer 6.2 and 6.1 figures end to end: 570 and 153 VMs, then refusals
demo-2013: $(VENV)/.installed
	$(PY) -m xsguard.sim.seed2013

# the suite again with the oldest dependencies dom0's Python 3.6 can install
test-oldest: $(OLDEST)/.installed
	$(OLDEST)/bin/python -c 'import structlog, tenacity, importlib.metadata as m; \
	  print("structlog", m.version("structlog"), "tenacity", m.version("tenacity"))'
	$(OLDEST)/bin/python -m pytest -q

# the hook, plugin and fail-open tests (and the killed-hooks storm) with the simulated dom0 on
# dom0's Python 3.6.15, xsguard and its wheels laid out as the RPM installs them; the test driver
# stays on the venv's Python. The larger storms stay on the venv's Python (they would double CI).
DOM0_PYTHON ?= $(shell pyenv prefix 3.6.15 2>/dev/null)/bin/python3.6
PY36_TESTS := tests/test_hook.py tests/test_plugin.py tests/test_failopen.py tests/test_migrate.py tests/test_overfill.py \
	tests/test_learned.py tests/test_audit.py tests/test_reboot.py tests/test_config_errors.py \
	tests/test_storm.py::test_hooks_killed_at_random_points \
	tests/test_hook_failures.py tests/test_plugin_failures.py tests/test_install_by_hand.py \
	tests/test_workstation.py::test_tables_are_utf8_whatever_the_locale tests/test_fast_path.py tests/test_journal.py
test-py36: $(VENV)/.installed
	@$(DOM0_PYTHON) -c 'import sys; assert sys.version_info[:3] == (3, 6, 15)' 2>/dev/null || \
	  { echo "test-py36: Python 3.6.15 not found at '$(DOM0_PYTHON)' (pyenv install 3.6.15, or DOM0_PYTHON=...)" >&2; exit 1; }
	$(PY) -m xsguard.sim.dom0python $(DOM0_PYTHON)
	XSGUARD_DOM0_PYTHON=$(DOM0_PYTHON) $(PY) -m pytest -q -p no:cacheprovider $(PY36_TESTS)

lint: $(VENV)/.installed
	$(VENV)/bin/vermin --no-tips --violations --target=3.6- $(CHECKED)
	$(VENV)/bin/ruff check $(CHECKED) tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/vulture --min-confidence 60 $(CHECKED) tests benchmarks vulture_allow.py

bench: $(VENV)/.installed
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

# the dom0 RPM (needs rpmbuild: apt-get install rpm), from the committed tree
rpm:
	packaging/build-rpm build/rpm

# wheel and sdist for workstations (pip install xsguard: the xsguard command, --xapi https://...)
dist: $(VENV)/.installed
	$(PY) -m pip install -q build
	$(PY) -m build --outdir dist .

clean:
	rm -rf $(VENV) $(OLDEST) build dist *.egg-info .coverage .coverage.*

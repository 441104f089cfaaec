# The two commands of the README:
#   make run    set up the virtualenv and run the API + the UI (offline: the bundled shapes model)
#   make test   set up the virtualenv and run every test (unit, API, e2e, browser, notebooks, lint)
# torch comes from PyTorch's CPU index (the small CPU-only build) when it answers within 3 s, else from
# the default index, with one line saying so (scripts/torch_index.py). `make install TORCH_INDEX=URL`
# chooses the index; `TORCH_INDEX=` (empty) the default one. Asked only when the venv is (re)built.

VENV ?= .venv
PYTHON ?= python3
TORCH_INDEX ?= $(shell $(PYTHON) scripts/torch_index.py)
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed-stamp
TORCH_PINS := $(shell grep -E '^(torch|torchvision)==' constraints.txt)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install run api ui lab docs test lint audit system-deps bench student clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) $(TORCH_PINS)
	$(PIP) install --quiet --constraint constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: install  ## the API on :8000 and the UI on :8501 (Ctrl-C stops both)
	$(VENV)/bin/yolo-service up

api: install
	$(VENV)/bin/yolo-service serve

ui: install
	$(VENV)/bin/yolo-service ui

# JupyterLab on :8888 for the Codespace's forwarded port, rooted at the repository (so the notebooks'
# links to ../workshop/ and ../yolo_service/ open) with its file browser in student/, the learners' copies
# (made first when missing; `make lab LAB_DIR=notebooks` for the instructors'). Open the printed URL (it has the token).
LAB_DIR ?= student
lab: install student
	$(VENV)/bin/jupyter lab --ip=0.0.0.0 --port=8888 --no-browser --ServerApp.root_dir=. --ContentsManager.preferred_dir=$(LAB_DIR)

# The workshop as a web site, rebuilt on every edit: http://localhost:8001 (8000 is the API's).
docs: install
	$(VENV)/bin/mkdocs serve --dev-addr 0.0.0.0:8001

# Debian packages the tests drive: Chromium (the browser test). The compose file is checked against the
# Compose Specification's schema (check-jsonschema), not with the old v1 binary.
system-deps:
	@command -v chromium >/dev/null || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends chromium; }

LINTED := yolo_service frontend tests benchmarks scripts

# Style, format, types (mypy strict on the library, settings in pyproject.toml), then the pinned set's known
# vulnerabilities (pip-audit: skipped, with the reason printed, when no advisory source answers).
lint: install
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy
	$(PY) scripts/audit_dependencies.py constraints.txt

audit: install  ## known vulnerabilities of the pinned versions (needs PyPI; skips with a reason offline)
	$(PY) scripts/audit_dependencies.py constraints.txt

test: install system-deps lint
	YOLO_SERVICE_OFFLINE=1 $(PY) -m pytest tests notebooks --nbval-lax -p no:cacheprovider

bench: install  ## speed and memory figures (not a test): bench/bench.json + bench/bench.png; QUICK=1 for a smoke run
	YOLO_SERVICE_OFFLINE=1 $(VENV)/bin/yolo-service bench --out bench $(if $(QUICK),--quick)

# The learners' copies in student/, solutions replaced by `...` (needs the venv: make install). Only the
# missing ones: a copy that exists is the learner's work and is kept. RESET=03_backend starts one again,
# FORCE=1 all of them; the old copy goes to student/.backup/NAME.TIMESTAMP.ipynb first.
STUDENT_DIR ?= student
student:
	$(PY) scripts/make_student_notebooks.py --out $(STUDENT_DIR) $(if $(filter 1 yes true,$(FORCE)),--force) \
		$(foreach name,$(RESET),--reset $(name))

clean:
	rm -rf $(VENV) build bench test-artifacts .pytest_cache

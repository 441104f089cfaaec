# The two commands of the README:
#   make run    set up the virtualenv and run the API + the UI (offline: the bundled shapes model)
#   make test   set up the virtualenv and run every test (unit, API, e2e, browser, images, notebooks, lint)
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

.PHONY: install run api ui lab docs test lint audit system-deps container-deps bench student clean mutation

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
# Through a Codespace's forwarding the page comes from https://NAME-8888.app.github.dev, an origin JupyterLab
# refuses by default (kernels fail to start): allow that one origin, named from the Codespace's own variables.
LAB_DIR ?= student
LAB_ORIGIN ?= $(if $(CODESPACE_NAME),https://$(CODESPACE_NAME)-8888.$(GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN))
lab: install student
	$(VENV)/bin/jupyter lab --ip=0.0.0.0 --port=8888 --no-browser --ServerApp.root_dir=. --ContentsManager.preferred_dir=$(LAB_DIR) $(if $(LAB_ORIGIN),--ServerApp.allow_origin=$(LAB_ORIGIN))

# The workshop as a web site, rebuilt on every edit: http://localhost:8001 (8000 is the API's).
docs: install
	$(VENV)/bin/mkdocs serve --dev-addr 0.0.0.0:8001

# Debian packages the tests drive: Chromium (the browser test). The compose file is checked against the
# Compose Specification's schema (check-jsonschema), not with the old v1 binary.
system-deps:
	@command -v chromium >/dev/null || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends chromium; }

# A container engine for the image tests (tests/e2e/test_images.py): Docker when its daemon answers, else podman
# from Debian's packages, with a stand-in for the official Python base image when Docker Hub cannot be reached.
# It prints what it uses; when no engine can be installed at all, the image tests skip and say why.
container-deps:
	@$(PYTHON) scripts/container_engine.py || echo "no container engine: the image tests will be skipped"

LINTED := yolo_service frontend tests benchmarks scripts

# Style, format, types (mypy strict on the library, settings in pyproject.toml).
lint: install
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy

# Known vulnerabilities of the pinned versions (pip-audit; skips, saying why, when no advisory source answers).
# Not part of `make test`: an advisory published tomorrow would turn a class's CI red with no change here.
# Run it when you update constraints.txt, or on a schedule.
audit: install
	$(PY) scripts/audit_dependencies.py constraints.txt

test: install system-deps container-deps lint
	YOLO_SERVICE_OFFLINE=1 $(PY) -m pytest tests notebooks --nbval-lax -p no:cacheprovider

# The mutation score of the core, per module (Cosmic Ray; not part of `make test`: each of the ~680 mutants is
# a test run, hours in all on 2 CPUs). SAMPLE=20 runs the same 20 per module every time (20 to 40 minutes on
# a shared 2-CPU machine); MODULES="client.py api.py" limits the modules; JSON=file keeps the results.
# Niced, one module at a time: the machine may be shared.
mutation: install
	nice -n 19 $(PY) scripts/mutation.py $(MODULES) $(if $(SAMPLE),--sample $(SAMPLE)) $(if $(JSON),--json $(JSON))

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

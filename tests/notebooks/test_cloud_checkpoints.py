"""Checkpoints of the cloud steps tell a wrong answer from a right one, without a kernel.

Step 6's deployment check asks for the JSON of ``/health`` and of ``/ready``: when it asked for their status
codes, the liveness route's 200 passed for the readiness one. Step 7's sizing checkpoint: the exercise cell's
given lines (``TARGET_RPS``) and the checkpoint cell run as the notebook has them, with ``results`` as a learner
measured them on a 2-CPU machine: one client alone already got 33 requests/s. A target below that made both
right answers 1, so an ``instances_at_1`` computed from the best throughput (the wrong row) passed, and the
question "what does --concurrency buy?" had nothing to compare.
"""

from __future__ import annotations

import math

import nbformat
import pytest

from tests.notebooks.runner import ROOT, has_exercise, is_checkpoint
from yolo_service.workshop.teaching import NotYet, check, strip_solutions

#: A learner's measurement (the notebook's section 2) on a shared 2-CPU machine.
MEASURED = [
    {"concurrency": 1, "throughput_rps": 33.0},
    {"concurrency": 2, "throughput_rps": 34.9},
    {"concurrency": 4, "throughput_rps": 42.1},
    {"concurrency": 8, "throughput_rps": 57.5},
]
BEST, ALONE = 57.5, 33.0


def sizing_cells() -> tuple[str, str]:
    """The sizing exercise as handed out (solution stripped) and its checkpoint, from the instructors' notebook."""
    cells = nbformat.read(ROOT / "notebooks" / "07_going_further.ipynb", as_version=4).cells
    exercise = next(i for i, c in enumerate(cells) if has_exercise(c) and "instances_at_1" in c.source)
    checkpoint = next(c for c in cells[exercise:] if is_checkpoint(c))
    return strip_solutions(cells[exercise].source).replace("...", "pass"), checkpoint.source


def target_rps() -> float:
    namespace: dict = {}
    exec(sizing_cells()[0], namespace)
    return namespace["TARGET_RPS"]


def run_sizing_checkpoint(instances_needed, instances_at_1) -> None:
    exercise, checkpoint = sizing_cells()
    namespace = {"check": check, "results": MEASURED}
    exec(exercise, namespace)
    namespace |= {"instances_needed": instances_needed, "instances_at_1": instances_at_1}
    exec(checkpoint, namespace)


def test_the_right_answers_differ_and_pass():
    needed, at_1 = math.ceil(target_rps() / BEST), math.ceil(target_rps() / ALONE)
    assert needed < at_1, f"TARGET_RPS = {target_rps()}: both answers are {needed} on a 2-CPU machine"
    run_sizing_checkpoint(needed, at_1)


@pytest.mark.parametrize(
    ("needed", "at_1"),
    [
        pytest.param("best", "best", id="at_1 from the best throughput, not one client's"),
        pytest.param("exact", "exact_alone", id="not rounded up"),
        pytest.param("best+1", "alone", id="one instance to spare"),
    ],
)
def test_a_wrong_answer_is_not_yet(needed, at_1):
    target = target_rps()
    answers = {
        "best": math.ceil(target / BEST),
        "alone": math.ceil(target / ALONE),
        "exact": target / BEST,
        "exact_alone": target / ALONE,
        "best+1": math.ceil(target / BEST) + 1,
    }
    with pytest.raises(NotYet):
        run_sizing_checkpoint(answers[needed], answers[at_1])


def deployment_checkpoint() -> str:
    """Step 6's checkpoint (1), the deployment alive and ready, as the notebook has it."""
    cells = nbformat.read(ROOT / "notebooks" / "06_cloud_run.ipynb", as_version=4).cells
    exercise = next(i for i, c in enumerate(cells) if has_exercise(c) and "/ready" in c.source)
    return next(c for c in cells[exercise:] if is_checkpoint(c)).source


READY = {"status": "ready", "default_model": "shapes", "engine": "openvino", "precision": "f32"}


def test_the_deployment_checkpoint_passes_the_two_answers():
    exec(deployment_checkpoint(), {"check": check, "health": {"status": "ok"}, "ready": READY})


@pytest.mark.parametrize(
    "ready",
    [
        pytest.param({"status": "ok"}, id="the liveness answer read twice"),
        pytest.param({"detail": "the default model is still loading", "error": "NotReady"}, id="a 503 body"),
        pytest.param(200, id="the status code, not the body"),
    ],
)
def test_the_deployment_checkpoint_tells_ready_from_alive(ready):
    with pytest.raises(NotYet):
        exec(deployment_checkpoint(), {"check": check, "health": {"status": "ok"}, "ready": ready})

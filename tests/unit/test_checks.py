"""The kit's named checkpoints: right answers pass, and no hint a learner can earn names the answer."""

from __future__ import annotations

import base64
import io
import json

import pytest

import yolo_service as ys
from yolo_service.workshop import checks
from yolo_service.workshop.teaching import NotYet


def png() -> bytes:
    buffer = io.BytesIO()
    ys.sample_scene()[0].save(buffer, format="PNG")
    return buffer.getvalue()


def hints_of(run, times: int = 2) -> list[str]:
    """The lines the checkpoint raises when run ``times`` times on the same mistake (the nudge, then the pointer)."""
    lines = []
    for _ in range(times):
        with pytest.raises(NotYet) as failed:
            run()
        lines.append(str(failed.value))
    return lines


def test_the_request_checkpoint_passes_the_answer_and_never_names_the_model_in_a_hint(capsys):
    image = png()
    body = {"image": base64.b64encode(image).decode("ascii"), "model": "shapes"}
    checks.predict_request(lambda: json.dumps(body), image)
    assert capsys.readouterr().out.count("✅") == 4

    wrong_model = json.dumps({**body, "model": "yolo26n"})
    assert hints_of(lambda: checks.predict_request(lambda: wrong_model, image))[0].startswith(
        "Not yet: which model should the backend run?"
    )
    no_model, undefined, a_dict = json.dumps({"image": body["image"]}), lambda: payload, lambda: body  # noqa: F821
    bytes_as_text = json.dumps({**body, "image": str(base64.b64encode(image))})
    for payload in (lambda: wrong_model, lambda: no_model, undefined, a_dict, lambda: bytes_as_text):
        for line in hints_of(lambda: checks.predict_request(payload, image)):  # noqa: B023
            assert "shapes" not in line and ".decode(" not in line, line


def test_the_compose_checkpoint_passes_the_answer_and_never_names_the_policy_in_a_hint(capsys):
    answer = {"services": {"frontend": {"ports": ["8502:8501"]}, "backend": {"restart": "unless-stopped"}}}
    checks.compose_changes(answer)
    assert capsys.readouterr().out.count("✅") == 2

    for restart in ("always", "no"):
        changed = {"services": {"frontend": {"ports": ["8502:8501"]}, "backend": {"restart": restart}}}
        for line in hints_of(lambda: checks.compose_changes(changed)):  # noqa: B023
            assert "unless-stopped" not in line


def test_published_reads_short_and_long_port_syntax():
    assert checks.published(["8502:8501", "127.0.0.1:9000:80/tcp"]) == {(8502, 8501), (9000, 80)}
    assert checks.published([{"published": 8502, "target": 8501}]) == {(8502, 8501)}

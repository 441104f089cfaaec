"""Checkpoints whose checking code would give the exercise away: the notebook calls them by name.

A checkpoint cell shows its code to the learner. Where that code must compare with the answer itself
(the restart policy to choose, the key that names the model) or its hints would be read before the
first try, the comparison and the graded hints live here: the learner sees one call, and a hint only
when a part fails. Each function runs :func:`~yolo_service.workshop.teaching.check` once per part, in
order, and stops at the first part that fails (raising :class:`~yolo_service.workshop.teaching.NotYet`).

The learner's variables come in as functions (``lambda: payload``): a name the exercise did not define
yet is then a failed part with its hint, not a ``NameError`` before the checkpoint starts.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from yolo_service.workshop.teaching import check

__all__ = ["compose_changes", "predict_request", "published"]

#: Step 1's exercise asks for this model (its text names it); the checkpoint compares with it.
_REQUESTED_MODEL = "shapes"
#: Step 5's exercise: the frontend's published ports, and the restart policy its text describes.
_FRONTEND_PORTS = {(8502, 8501)}
_BACKEND_RESTART = "unless-stopped"


def predict_request(payload: Callable[[], Any], png_bytes: bytes) -> None:
    """Step 1: ``payload`` is JSON text that the API's schema accepts, for the model asked, with all of the image."""
    from yolo_service import PredictRequest, load_image

    check(
        lambda: isinstance(payload(), str),
        "payload is text, ready to travel over HTTP",
        (
            "`payload` must be a str: the JSON text of your `body`, not the dict itself",
            "the json module writes a dict as JSON text: https://docs.python.org/3/library/json.html#basic-usage",
        ),
    )
    check(
        lambda: PredictRequest.model_validate_json(payload()),
        "the API's schema accepts it",
        (
            "the schema refuses it: the part in brackets names the field; compare your keys with PredictRequest's",
            "the contract is PredictRequest in yolo_service/schema.py: its fields, and those of the class it extends",
        ),
    )
    check(
        lambda: json.loads(payload()).get("model") == _REQUESTED_MODEL,
        "it asks for the shapes model",
        (
            "which model should the backend run? The exercise names it; send it under the key the schema uses",
            "the class PredictRequest extends, in yolo_service/schema.py, has the field that names the model",
        ),
    )
    check(
        lambda: base64.b64decode(json.loads(payload())["image"], validate=True) == png_bytes,
        f"its image decodes to the same {len(png_bytes)} bytes: a {load_image(png_bytes).size} image",
        (
            "the image must be all of png_bytes, base64-encoded, as text",
            "base64.b64encode gives bytes (https://docs.python.org/3/library/base64.html#base64.b64encode); "
            "bytes become text with bytes.decode: https://docs.python.org/3/library/stdtypes.html#bytes.decode",
        ),
    )


def published(ports: Any) -> set[tuple[int, int]]:
    """(host port, container port) pairs of a service's ``ports``, short (``"HOST:CONTAINER"``) or long syntax."""
    pairs = set()
    for port in ports or []:
        if isinstance(port, dict):
            pairs.add((int(port.get("published", 0)), int(port.get("target", 0))))
        else:
            *_, host, container = str(port).split("/")[0].split(":")
            pairs.add((int(host), int(container)))
    return pairs


def compose_changes(changed: dict[str, Any]) -> None:
    """Step 5: the changed compose data publishes the UI on host port 8502, and restarts the backend as asked."""
    check(
        lambda: published(changed["services"]["frontend"]["ports"]) == _FRONTEND_PORTS,
        "the UI is published on http://localhost:8502 (the container still listens on 8501)",
        (
            "the frontend must publish host port 8502 to its container's 8501, and nothing else",
            "the `ports` syntax, HOST:CONTAINER: https://docs.docker.com/reference/compose-file/services/#ports",
        ),
    )
    check(
        lambda: changed["services"]["backend"]["restart"] == _BACKEND_RESTART,
        "the backend restarts after a crash, unless you stop it",
        (
            "which restart policy restarts after a crash but not after you stop the container yourself?",
            "the policies and what each does: https://docs.docker.com/reference/compose-file/services/#restart",
        ),
    )

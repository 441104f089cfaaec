"""The teaching helpers: real source on screen, checkpoints, and the learners' copies."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import nbformat
import pytest

from tests.helpers import ROOT
from yolo_service import api
from yolo_service.workshop.teaching import (
    PLACEHOLDER,
    NotYet,
    check,
    source_of,
    strip_solutions,
    write_student_notebook,
)


def test_source_of_a_nested_route_is_the_file_s_own_lines():
    snippet = source_of("yolo_service/api.py", "create_app.health")
    lines = (ROOT / "yolo_service/api.py").read_text(encoding="utf-8").splitlines()
    assert snippet.text.splitlines()[0] == (
        '@app.api_route("/health", methods=["GET", "HEAD"], summary="Liveness: 200 as soon as the process serves")'
    )
    assert snippet.text.splitlines()[-1] == "    return HealthResponse()"
    assert lines[snippet.first - 1].strip() == snippet.text.splitlines()[0]
    assert snippet.language == "python" and snippet.label.startswith("yolo_service/api.py, lines ")


def test_source_of_a_method_and_of_an_object():
    by_name = source_of("yolo_service/api.py", "Service.load_default")
    by_object = source_of(api.Service.load_default)
    assert by_name.text == by_object.text and by_name.first == by_object.first
    assert by_object.path == "yolo_service/api.py"


def test_source_of_a_yaml_block_and_between_markers(tmp_path):
    path = tmp_path / "compose.yml"
    path.write_text("services:\n  backend:\n    image: b\n\n    ports: [1]\n  frontend:\n    image: f\n")
    block = source_of(path, start="backend:")
    assert block.text == "backend:\n  image: b\n\n  ports: [1]" and (block.first, block.last) == (2, 5)
    assert source_of(path, start="ports", end="image: f").text == "  ports: [1]\nfrontend:\n  image: f"
    assert source_of(path, start="backend:").language == "yaml"


def test_missing_names_and_markers_say_what_is_missing():
    with pytest.raises(LookupError, match="no_such_route"):
        source_of("yolo_service/api.py", "create_app.no_such_route")
    with pytest.raises(LookupError, match="NOT THERE"):
        source_of("frontend/app.py", start="NOT THERE")


def test_show_source_prints_plain_text_outside_jupyter(capsys):
    from yolo_service.workshop.teaching import show_source

    show_source("frontend/app.py", "default_backend_url")
    out = capsys.readouterr().out
    assert out.startswith("# frontend/app.py, lines ") and 'os.environ.get("BACKEND_URL"' in out


def test_check_passes_or_fails_with_the_hint_in_one_line(capsys):
    check(1 + 1 == 2, "right", "unused")
    assert capsys.readouterr().out == "✅ right\n"
    with pytest.raises(NotYet, match=r"^Not yet: set body$"):
        check(False, "body is set", "set body")
    with pytest.raises(AssertionError, match=r"^Not yet \(`body` does not exist yet\): set body$"):
        check(lambda: body["model"] == "shapes", "body has a model", "set body")  # noqa: F821


def test_check_grades_its_hints_a_nudge_first_then_the_pointer():
    hints = ("look at the port", "see https://docs.python.org/3/library/socket.html")
    messages = []
    for _ in range(3):
        with pytest.raises(NotYet) as failed:
            check(False, "the port is free", hints)
        messages.append(str(failed.value))
    assert messages == [
        "Not yet: look at the port (stuck? run this cell again for a pointer)",
        "Not yet: see https://docs.python.org/3/library/socket.html",
        "Not yet: see https://docs.python.org/3/library/socket.html",
    ]


def run_cell(source: str, **names: object) -> str:
    """Run ``source`` as Jupyter runs a cell (its code named after its text), return the NotYet line it raised."""
    code = compile(textwrap.dedent(source), "/tmp/ipykernel_0/cell-of-this-test.py", "exec")
    with pytest.raises(NotYet) as failed:
        exec(code, {"check": check, **names})
    return str(failed.value)


def test_a_checkpoint_whose_text_changes_between_runs_still_gets_to_the_pointer():
    cell = """
        check(
            lambda: port_is_free(port) is False,
            f"port {port} is in use: False",
            (f"port {port} is held by another socket: answer False there", "what bind does: the socket docs"),
        )
        """
    first = run_cell(cell, port=40001, port_is_free=lambda port: None)
    second = run_cell(cell, port=40777, port_is_free=lambda port: None)  # a fresh port on each run
    assert first == "Not yet: port 40001 is held by another socket: answer False there " + (
        "(stuck? run this cell again for a pointer)"
    )
    assert second == "Not yet: what bind does: the socket docs"


def test_a_new_cause_of_failure_starts_again_at_the_nudge():
    cell = """
        check(lambda: isinstance(payload, str), "payload is text", ("not the dict itself", "the json docs"))
        """
    assert run_cell(cell).startswith("Not yet (`payload` does not exist yet): not the dict itself (stuck?")
    # Then `payload = body`: another cause, so the nudge that fits it, not the pointer earned before.
    assert run_cell(cell, payload={}) == "Not yet: not the dict itself (stuck? run this cell again for a pointer)"
    assert run_cell(cell, payload={}) == "Not yet: the json docs"
    # An answer quoted in the nudge is part of the cause: another answer, the nudge again.
    quoted = """check(False, "detections", (f"predict() answered {text!r}", "the schema"))"""
    assert run_cell(quoted, text="null").endswith("for a pointer)")
    assert (
        run_cell(quoted, text="[{}]") == "Not yet: predict() answered '[{}]' (stuck? run this cell again for a pointer)"
    )
    assert run_cell(quoted, text="[{}]") == "Not yet: the schema"


def test_an_explicit_part_names_it_wherever_it_is_checked():
    for _ in range(2):
        with pytest.raises(NotYet) as failed:
            check(False, "x", ("nudge", "pointer"), part="test-explicit-part")
    assert str(failed.value) == "Not yet: pointer"
    check(True, "x", ("nudge", "pointer"), part="test-explicit-part")  # a success forgets the failures
    with pytest.raises(NotYet, match="nudge"):
        check(False, "x", ("nudge", "pointer"), part="test-explicit-part")


def test_a_failed_part_shows_one_line_without_a_traceback():
    from pydantic import BaseModel

    class Body(BaseModel):
        image: str

    with pytest.raises(NotYet) as failed:
        check(lambda: Body.model_validate({"model": "shapes"}), "the schema accepts it", "add the image")
    assert str(failed.value) == "Not yet (image: Field required): add the image"
    with pytest.raises(NotYet) as failed:
        check(lambda: 1 / 0, "it divides", "divide by something else")
    assert str(failed.value) == "Not yet (ZeroDivisionError: division by zero): divide by something else"
    # IPython prints _render_traceback_() instead of the frames: one red line.
    assert [line.count("\n") for line in failed.value._render_traceback_()] == [0]
    assert "division by zero" in failed.value._render_traceback_()[0]


def test_strip_solutions_keeps_hints_indentation_and_valid_python():
    source = textwrap.dedent(
        """\
        # Your turn: return the status
        def health():
            # hint: a dict
            ### BEGIN SOLUTION
            status = "ok"
            return {"status": status}
            ### END SOLUTION

        answer = None
        ### BEGIN SOLUTION
        answer = 42
        ### END SOLUTION
        print(answer)"""
    )
    stripped = strip_solutions(source)
    assert stripped == textwrap.dedent(
        f"""\
        # Your turn: return the status
        def health():
            # hint: a dict
            {PLACEHOLDER}

        answer = None
        {PLACEHOLDER}
        print(answer)"""
    )
    compile(stripped, "cell", "exec")
    with pytest.raises(ValueError, match="unbalanced"):
        strip_solutions("### BEGIN SOLUTION\nx = 1\n")


def test_student_notebook_has_no_solution_and_no_output(tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell("### BEGIN SOLUTION stays in markdown"),
        nbformat.v4.new_code_cell("x = 1\n### BEGIN SOLUTION\nx = 2\n### END SOLUTION", execution_count=3),
    ]
    notebook.cells[1].outputs = [nbformat.v4.new_output("stream", text="2")]
    notebook.metadata["widgets"] = {"state": {}}
    nbformat.write(notebook, tmp_path / "in.ipynb")

    assert write_student_notebook(tmp_path / "in.ipynb", tmp_path / "out" / "in.ipynb") == 1

    out = nbformat.read(tmp_path / "out" / "in.ipynb", as_version=4)
    assert out.cells[1].source == f"x = 1\n{PLACEHOLDER}"
    assert (out.cells[1].outputs, out.cells[1].execution_count) == ([], None)
    assert out.cells[0].source == notebook.cells[0].source and "widgets" not in out.metadata


def test_make_student_script_writes_every_notebook(tmp_path):
    result = subprocess.run(
        [sys.executable, "scripts/make_student_notebooks.py", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))


def test_teaching_imports_nothing_heavy():
    heavy = "{'torch', 'ultralytics', 'IPython', 'nbformat', 'numpy'}"
    code = f"import sys, yolo_service.workshop.teaching; print(sorted({heavy} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr

"""Mutation score of the core, per module: how many small changes to the code do the fast tests catch?

Cosmic Ray (``cosmic-ray``, in the dev extra) makes each mutant (``<`` becomes ``<=``, ``1000``
becomes ``1001``, ``+`` becomes ``-``, an ``if`` condition gets a ``not`` …) and runs the tests that
cover the module against it; a mutant the tests do not fail on *survived*: a change nobody would notice.

- **Scope:** the core modules, and in ``api.py`` and the exported engine only the parts listed in
  :data:`SCOPES` (the middlewares and the error rendering; letterbox, NMS and output decoding).
- **Tests:** for each module, only the fast tests that execute it (unit, API, frontend, fast engine
  tests; never ``slow``), the most targeted first, with ``-x``: most mutants die in the first seconds.
  pytest plugins other than anyio, hypothesis (fixed seed) and pytest-timeout are not loaded:
  schemathesis, nbval and playwright cost seconds per run and none of these tests use them.
- **Operators:** Cosmic Ray's core set, with each arithmetic operator and comparison replaced by its
  nearest opposite only (:func:`operator_kept`); nothing in type annotations (``str | None``).
- **Equivalent mutants** (a change that cannot change behaviour) are listed by name, with the reason,
  in ``mutation-equivalents.json`` next to this script; they are not run and not counted, and printed once.

Every mutant runs in a copy of the tree (``--tree``, default: this checkout) in a temporary directory,
so the working tree is never edited. ``make mutation`` runs it under ``nice -n 19``, one module at a time.

Usage::

    python scripts/mutation.py                          # every module; prints scores and survivors
    python scripts/mutation.py client.py api.py         # some modules
    python scripts/mutation.py --list                   # the mutants in scope, by name, without running them
    python scripts/mutation.py --sample 40              # 40 mutants per module (the same 40 in every checkout)
    python scripts/mutation.py --json out.json --tree /path/to/another/checkout
    python scripts/mutation.py --report before.json after.json   # a markdown table of both
    python scripts/mutation.py --sample 20 --resume sample10.json   # only the mutants not measured yet
"""

from __future__ import annotations

import argparse
import ast
import difflib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Scope:
    """What to mutate in one module and which tests run against each of its mutants."""

    paths: tuple[str, ...]  # candidates, first existing wins (the exported engine moved into a package)
    tests: tuple[str, ...]  # test files, most targeted first; missing ones are left out
    definitions: tuple[str, ...] = ()  # top-level functions/classes to mutate; () for the whole module
    middlewares: bool = False  # also every class with an ``async def __call__(self, scope, receive, send)``
    skipped: tuple[str, ...] = ()  # top-level functions/classes not mutated
    extra: tuple[str, ...] = field(default=())  # pytest arguments


SCOPES: dict[str, Scope] = {
    "images.py": Scope(
        ("yolo_service/images.py",),
        (
            "tests/unit/test_images.py",
            "tests/unit/test_limits.py",
            "tests/unit/test_images_fuzz.py",
            "tests/api/test_limits.py",
            "tests/api/test_api.py",
            "tests/perf/test_reduction.py",
        ),
    ),
    "schema.py": Scope(
        ("yolo_service/schema.py",),
        (
            "tests/unit/test_limits.py",
            "tests/api/test_limits.py",
            "tests/api/test_client.py",
            "tests/api/test_api.py",
            "tests/perf/test_engines.py",
        ),
        skipped=("_example",),  # the /docs example's drawing: documentation, not the contract
    ),
    "errors.py": Scope(
        ("yolo_service/errors.py",),
        (
            "tests/unit/test_errors.py",
            "tests/api/test_client.py",
            "tests/unit/test_limits.py",
            "tests/api/test_limits.py",
            "tests/api/test_api.py",
        ),
    ),
    "client.py": Scope(
        ("yolo_service/client.py",),
        (
            "tests/api/test_client.py",
            "tests/api/test_api.py",
            "tests/frontend/test_untrusted_backends.py",
            "tests/frontend/test_app.py",
        ),
    ),
    "api.py": Scope(
        ("yolo_service/api.py",),
        ("tests/api/test_limits.py", "tests/api/test_api.py", "tests/api/test_logs.py", "tests/perf/test_metrics.py"),
        definitions=("error_response", "_http_error", "_validation_error", "_field_name"),
        middlewares=True,
    ),
    "exported.py": Scope(
        ("yolo_service/engines/exported.py", "yolo_service/engines.py"),
        ("tests/unit/test_postprocess.py", "tests/perf/test_engines.py"),
        definitions=("letterbox", "nms", "decode_output"),
    ),
}

#: Arithmetic and comparisons become their nearest opposite only (``+`` -> ``-``, ``<`` -> ``<=`` and ``>=``,
#: ``==`` -> ``!=``), as mutmut does: Cosmic Ray's full set turns each ``+`` into five mutants, nearly always
#: killed by the same test, at several seconds a run. Other operators (numbers +1/-1, ``and``/``or``,
#: an added ``not``, ``True``/``False``, exception types, empty for loops, removed decorators) are kept.
BINARY = {"Add": "Sub", "Sub": "Add", "Mul": "Div", "Div": "Mul", "FloorDiv": "Div", "Mod": "FloorDiv"}
COMPARISON = {
    "Lt": ("LtE", "GtE"),
    "LtE": ("Lt", "Gt"),
    "Gt": ("GtE", "LtE"),
    "GtE": ("Gt", "Lt"),
    "Eq": ("NotEq",),
    "NotEq": ("Eq",),
    "Is": ("IsNot",),
    "IsNot": ("Is",),
    "In": ("NotIn",),
    "NotIn": ("In",),
}


def operator_kept(name: str) -> bool:
    """Whether Cosmic Ray's operator ``name`` (e.g. ``core/ReplaceBinaryOperator_Add_Mul``) is in the set."""
    if match := re.fullmatch(r"core/ReplaceBinaryOperator_(\w+?)_(\w+)", name):
        return BINARY.get(match[1]) == match[2]
    if match := re.fullmatch(r"core/ReplaceComparisonOperator_(\w+?)_(\w+)", name):
        return match[2] in COMPARISON.get(match[1], ())
    return True


#: Mutants that cannot change behaviour, by name (see ``--list``), with the reason: mutation-equivalents.json.
EQUIVALENT: dict[str, str] = {
    entry["mutant"]: entry["why"]
    for entry in json.loads((Path(__file__).with_name("mutation-equivalents.json")).read_text())
}

PYTEST = (
    "-x -q -p no:cacheprovider -m 'not slow' -p anyio.pytest_plugin -p pytest_timeout "
    "-p _hypothesis_pytestplugin --hypothesis-seed=0"
)


@dataclass
class Mutant:
    """One mutant: Cosmic Ray's job and a name that survives edits elsewhere in the file."""

    job_id: str
    name: str
    operator: str
    line: int
    outcome: str = "pending"  # killed, survived, incompetent, equivalent


def _definitions(tree: ast.Module) -> list[tuple[int, int, str, str]]:
    """``(first line, last line, qualified name, top-level name)`` of every function and class."""
    found: list[tuple[int, int, str, str]] = []

    def visit(node: ast.AST, prefix: str, top: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                start = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                found.append((start, child.end_lineno or child.lineno, name, top or child.name))
                visit(child, name + ".", top or child.name)
            else:
                visit(child, prefix, top)

    visit(tree, "", "")
    return found


def _is_middleware(node: ast.stmt) -> bool:
    """A class with ``async def __call__(self, scope, receive, send)``: a pure ASGI middleware."""
    return isinstance(node, ast.ClassDef) and any(
        isinstance(item, ast.AsyncFunctionDef)
        and item.name == "__call__"
        and [a.arg for a in item.args.args] == ["self", "scope", "receive", "send"]
        for item in node.body
    )


def _annotations(tree: ast.Module) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where annotations are, ``((line, column), (end line, end column))``: ``int | None`` is a type, not code."""
    spans = []
    for node in ast.walk(tree):
        for annotation in (getattr(node, "annotation", None), getattr(node, "returns", None)):
            if annotation is not None:
                end = (annotation.end_lineno or annotation.lineno, annotation.end_col_offset or 0)
                spans.append(((annotation.lineno, annotation.col_offset), end))
    return spans


def name_mutants(
    source: str, module: str, scope: Scope, items: list[tuple[str, str, int, tuple[int, int]]]
) -> list[Mutant]:
    """Name each of Cosmic Ray's ``(job id, operator, occurrence, (line, column))`` in scope.

    The name is ``module:definition: old line -> new line``: it stays the same when other code moves.
    """
    from cosmic_ray.mutating import mutate_code
    from cosmic_ray.plugins import get_operator

    tree = ast.parse(source)
    definitions = _definitions(tree)
    wanted = set(scope.definitions)
    if scope.middlewares:
        wanted |= {node.name for node in tree.body if _is_middleware(node)}
    annotations = _annotations(tree)
    lines = source.splitlines()
    mutants, seen = [], Counter[str]()
    for job_id, operator, occurrence, position in items:
        line = position[0]
        if not operator_kept(operator) or any(start <= position < end for start, end in annotations):
            continue
        enclosing = [d for d in definitions if d[0] <= line <= d[1]]
        innermost = max(enclosing, key=lambda d: d[0], default=None)
        top = innermost[3] if innermost else None
        if (wanted and top not in wanted) or top in scope.skipped:
            continue
        try:
            mutated = mutate_code(source, get_operator(operator)(), occurrence)
        except AttributeError:  # Cosmic Ray cannot rewrite `except (a.B, C)` (a dotted name): no mutant
            continue
        if mutated is None:
            continue
        new = mutated.splitlines()
        # The changed lines, old -> new, are the mutant's readable name.
        change = next(
            op for op in difflib.SequenceMatcher(None, lines, new, autojunk=False).get_opcodes() if op[0] != "equal"
        )
        old_text = " ".join(text.strip() for text in lines[change[1] : change[2]]) or "(nothing)"
        new_text = " ".join(text.strip() for text in new[change[3] : change[4]]) or "(removed)"
        where = innermost[2] if innermost else "<module>"
        name = f"{module}:{where}: {old_text} -> {new_text}"
        seen[name] += 1
        if seen[name] > 1:
            name += f" #{seen[name]}"
        mutants.append(Mutant(job_id, name, operator, line))
    return mutants


def _copy_tree(source: Path, into: Path) -> Path:
    """A copy of the checkout's code and tests (no .git, no virtualenv, no caches): the mutants' playground."""
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "build", "test-artifacts", "__pycache__", "*.pyc", "bench", "student", ".pytest_cache"
    )
    target = into / "tree"
    shutil.copytree(source, target, ignore=ignore)
    return target


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def sample(mutants: list[Mutant], size: int | None) -> list[Mutant]:
    """The ``size`` mutants whose names hash lowest: a random sample that picks the same mutants in every checkout."""
    if not size or size >= len(mutants):
        return mutants
    ranked = sorted(mutants, key=lambda m: hashlib.sha256(m.name.encode()).hexdigest())[:size]
    return sorted(ranked, key=lambda m: m.line)


def run_module(
    module: str,
    tree: Path,
    work: Path,
    list_only: bool = False,
    size: int | None = None,
    known: dict[str, str] | None = None,
) -> dict:
    """Mutate one module in ``tree`` and run its tests against each mutant (or a sample of ``size``).

    ``known``: outcomes (``killed``, ``survived``) of mutants measured before on the same tree, by name: not run again.
    """
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

    scope = SCOPES[module]
    path = next((p for p in scope.paths if (tree / p).is_file()), None)
    if path is None:
        raise SystemExit(f"{module}: none of {scope.paths} in {tree}")
    tests = [t for t in scope.tests if (tree / t).is_file()]
    env = dict(os.environ, PYTHONPATH=str(tree), YOLO_SERVICE_OFFLINE="1", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    command = f"{sys.executable} -m pytest {PYTEST} {' '.join(scope.extra)} {' '.join(tests)}"
    session = work / f"{module}.sqlite"
    config = work / f"{module}.toml"

    def write_config(timeout: float) -> None:
        config.write_text(
            "[cosmic-ray]\n"
            f"module-path = {json.dumps(path)}\n"
            f"timeout = {timeout:.0f}\n"
            "excluded-modules = []\n"
            f"test-command = {json.dumps(command)}\n"
            "[cosmic-ray.distributor]\n"
            'name = "local"\n'
        )

    write_config(60)
    cosmic = [sys.executable, "-m", "cosmic_ray.cli"]
    done = _run([*cosmic, "init", str(config), str(session)], tree, env)
    if done.returncode:
        raise SystemExit(f"{module}: cosmic-ray init failed:\n{done.stderr}")
    source = (tree / path).read_text()
    with use_db(str(session), WorkDB.Mode.open) as db:
        items = [
            (item.job_id, m.operator_name, m.occurrence, tuple(m.start_pos))
            for item in db.work_items
            for m in item.mutations
        ]
        everything = name_mutants(source, module, scope, items)
        mutants = sample(everything, size)
        in_scope = {m.job_id for m in mutants}
        for m in mutants:
            if m.name in EQUIVALENT:
                m.outcome = "equivalent"
            elif known and m.name in known:
                m.outcome = known[m.name]
        skip = [job for job, *_ in items if job not in in_scope] + [m.job_id for m in mutants if m.outcome != "pending"]
        db.set_multiple_results(skip, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
    result = {"module": path, "tests": tests, "command": command, "mutants": len(mutants), "in_scope": len(everything)}
    if list_only:
        result["names"] = [m.name for m in mutants]
        return result

    started = time.monotonic()  # the unmutated baseline: it must pass, and it sets the timeout
    clean = subprocess.run(command, shell=True, cwd=tree, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if clean.returncode:
        # No score without a green baseline: say so and go on with the next module.
        print(f"{module}: the tests fail without any mutant: no score\n{clean.stdout[-3000:]}", flush=True)
        return result | {"error": "the tests fail without any mutant", "output": clean.stdout[-3000:]}
    write_config(max(60.0, 4 * seconds))
    print(
        f"{module}: {len(mutants)} mutants of {path}; tests: {' '.join(tests)} ({seconds:.0f} s unmutated)", flush=True
    )
    started = time.monotonic()
    done = _run([*cosmic, "exec", str(config), str(session)], tree, env)
    if done.returncode:
        raise SystemExit(f"{module}: cosmic-ray exec failed:\n{done.stderr[-3000:]}")
    by_job = {m.job_id: m for m in mutants}
    diffs: dict[str, str] = {}
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item, outcome in db.completed_work_items:
            mutant = by_job.get(item.job_id)
            if mutant is None or mutant.outcome == "equivalent":
                continue
            if outcome.worker_outcome == WorkerOutcome.NORMAL:
                mutant.outcome = "survived" if outcome.test_outcome == TestOutcome.SURVIVED else "killed"
                if mutant.outcome == "survived":
                    diffs[mutant.name] = outcome.diff or ""
            else:  # the mutated module does not even import, or the worker crashed: the tests notice that
                mutant.outcome = "killed"
    counted = [m for m in mutants if m.outcome != "equivalent"]
    result["killed_names"] = [m.name for m in counted if m.outcome == "killed"]
    killed = sum(m.outcome == "killed" for m in counted)
    survivors = [m.name for m in counted if m.outcome == "survived"]
    result.update(
        counted=len(counted),
        killed=killed,
        survived=len(survivors),
        score=round(100 * killed / len(counted), 1) if counted else 100.0,
        survivors=survivors,
        equivalent=[m.name for m in mutants if m.outcome == "equivalent"],
        pending=[m.name for m in counted if m.outcome == "pending"],
        minutes=round((time.monotonic() - started) / 60, 1),
    )
    print(f"{module}: {killed}/{len(counted)} killed = {result['score']} % ({result['minutes']} min)", flush=True)
    for name in survivors:
        print(f"  survived: {name}", flush=True)
    return result


def with_equivalents(results: dict) -> dict:
    """``results`` (from ``--json``) recounted with today's :data:`EQUIVALENT` list: a run made before a
    mutant was found equivalent counted it as a survivor (an equivalent mutant cannot be killed)."""
    recounted = {}
    for module, r in results.items():
        if "error" in r:
            recounted[module] = r
            continue
        moved = [name for name in r["survivors"] if name in EQUIVALENT]
        counted = r["counted"] - len(moved)
        recounted[module] = r | {
            "survivors": [name for name in r["survivors"] if name not in EQUIVALENT],
            "equivalent": sorted({*r["equivalent"], *moved}),
            "counted": counted,
            "survived": r["survived"] - len(moved),
            "score": round(100 * r["killed"] / counted, 1) if counted else 100.0,
        }
    return recounted


def report(before: dict, after: dict) -> str:
    """Two ``--json`` results side by side (markdown): the score per module, what survived, what is equivalent."""
    before, after = with_equivalents(before), with_equivalents(after)
    lines = [
        "| module | mutants before | score before | mutants after | equivalent after | score after |",
        "|---|---|---|---|---|---|",
    ]
    for module in after:
        b, a = before.get(module, {}), after[module]
        if "error" in a or "error" in b:
            lines.append(f"| {a['module']} | no score: {a.get('error') or b.get('error')} |")
            continue
        lines.append(
            f"| {a['module']} | {b.get('counted', '-')} | {b.get('score', '-')} % | {a['counted']} | "
            f"{len(a['equivalent'])} | {a['score']} % |"
        )
    lines += ["", "Surviving after:", ""]
    lines += [f"- `{name}`" for r in after.values() for name in r.get("survivors", ())] or ["- none"]
    equivalent = sorted({n for r in (*before.values(), *after.values()) for n in r.get("equivalent", ())})
    lines += ["", "Equivalent (not counted), in either run:", ""]
    lines += [f"- `{name}`: {EQUIVALENT.get(name, '?')}" for name in equivalent] or ["- none"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"default: every module ({', '.join(SCOPES)})", metavar="MODULE")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout to measure (default: this one)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--list", action="store_true", help="name the mutants in scope; run nothing")
    parser.add_argument("--sample", type=int, help="per module, only this many mutants (the same ones in every run)")
    parser.add_argument(
        "--resume", type=Path, help="a --json of an earlier run on the same tree: its mutants are not run again"
    )
    parser.add_argument(
        "--retry-survivors", action="store_true", help="with --resume: run its survivors again (tests were added)"
    )
    parser.add_argument("--report", nargs=2, type=Path, metavar=("BEFORE", "AFTER"), help="compare two --json files")
    args = parser.parse_args(argv)
    if args.report:
        print(report(*(json.loads(path.read_text()) for path in args.report)), end="")
        return 0
    modules = args.modules or list(SCOPES)
    if unknown := sorted(set(modules) - set(SCOPES)):
        parser.error(f"unknown module {', '.join(unknown)}; choose from {', '.join(SCOPES)}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="mutation-") as scratch:
        tree = _copy_tree(args.tree.resolve(), Path(scratch))
        for module in modules:
            known = {}
            if args.resume:
                earlier = json.loads(args.resume.read_text()).get(module, {})
                known = {name: "killed" for name in earlier.get("killed_names", ())}
                if not args.retry_survivors:
                    known |= {name: "survived" for name in earlier.get("survivors", ())}
            results[module] = run_module(
                module, tree, Path(scratch), list_only=args.list, size=args.sample, known=known
            )
            if args.list:
                print(f"{module}: {results[module]['mutants']} mutants")
                for name in results[module]["names"]:
                    print(f"  {name}")
    if not args.list:
        print("\nmodule        mutants  equivalent  killed  survived  score")
        for module, r in results.items():
            if "error" in r:
                print(f"{module:<13} {r['error']}")
                continue
            print(
                f"{module:<13} {r['counted']:>7}  {len(r['equivalent']):>10}  {r['killed']:>6}  "
                f"{r['survived']:>8}  {r['score']:>5} %"
            )
        listed = sorted({n for r in results.values() for n in r.get("equivalent", ())})
        if listed:
            print("\nequivalent (not counted):")
            for name in listed:
                print(f"  {name}: {EQUIVALENT[name]}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

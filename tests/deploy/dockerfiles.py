"""A small Dockerfile reader for the tests: instructions, stages (with their parents), ENV, COPY sources.

Enough of the Dockerfile syntax for this repository's files: line continuations, comments,
``FROM image AS name`` (the image may name a stage through a build argument: ``FROM ${MODEL}-onnx``),
``ENV K=V …`` / ``ENV K V`` (with ``${ARG}`` substituted), ``ARG K[=V]`` (before the first FROM too),
``COPY [--flags] SRC… DEST``.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

#: What counts as the kit's own code in a COPY (editing any of it must not reinstall dependencies).
KIT_SOURCES = ("yolo_service", "README.md", "pyproject.toml", "frontend")


@dataclass(frozen=True)
class Instruction:
    """One instruction: its keyword (upper case), its arguments as written, its first line number."""

    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    """A build stage: its name (or index), its base (a stage name or an image) and its own instructions."""

    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)


def instructions(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile, continuation lines joined, comments dropped."""
    result, buffer, start = [], "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if buffer and line.startswith("#"):
            continue
        if not buffer:
            start = number
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        keyword, _, args = buffer.partition(" ")
        result.append(Instruction(keyword.upper(), args.strip(), start))
        buffer = ""
    return result


def substitute(text: str, values: dict[str, str]) -> str:
    """``text`` with ``${NAME}`` and ``$NAME`` replaced by ``values`` (unknown names are left as written)."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m[1] or m[2], m[0]), text)


class Dockerfile:
    """A parsed Dockerfile; ``build_args`` are the ``--build-arg`` values (else each ARG's default)."""

    def __init__(self, path: Path, build_args: dict[str, str] | None = None) -> None:
        self.path = path
        self.text = path.read_text()
        self.build_args = dict(build_args or {})
        self.stages: dict[str, Stage] = {}
        #: ARGs declared before the first FROM: usable in FROM lines, and in a stage that declares them again.
        self.global_args: dict[str, str] = {}
        for ins in instructions(self.text):
            if ins.keyword == "FROM":
                words = ins.args.split()
                words = [w for w in words if not w.startswith("--")]
                name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(self.stages))
                self.stages[name] = Stage(name, words[0])
            elif self.stages:
                list(self.stages.values())[-1].instructions.append(ins)
            elif ins.keyword == "ARG":
                key, _, value = ins.args.partition("=")
                self.global_args[key.strip()] = self.build_args.get(key.strip(), value.strip())

    def with_args(self, **build_args: str) -> Dockerfile:
        """The same file, built with ``--build-arg KEY=VALUE`` for each of ``build_args``."""
        return Dockerfile(self.path, {**self.build_args, **build_args})

    def base_of(self, stage: Stage) -> str:
        """The stage's FROM, build arguments substituted (a stage name or an image)."""
        return substitute(stage.base, self.global_args)

    @property
    def default_target(self) -> str:
        """The last stage: what ``docker build`` builds without ``--target``."""
        return list(self.stages)[-1]

    def chain(self, target: str | None = None) -> list[Stage]:
        """The stages a target is built from, base first."""
        stage = self.stages[target or self.default_target]
        chain = [stage]
        while self.base_of(stage) in self.stages:
            stage = self.stages[self.base_of(stage)]
            chain.insert(0, stage)
        return chain

    def base_image(self, target: str | None = None) -> str:
        """The image the target's chain starts from."""
        return self.base_of(self.chain(target)[0])

    def needs(self, target: str | None = None) -> set[str]:
        """Every stage building ``target`` takes: its chain and, recursively, the stages it copies from."""
        needed: set[str] = set()
        todo = [target or self.default_target]
        while todo:
            for stage in self.chain(todo.pop()):
                if stage.name in needed:
                    continue
                needed.add(stage.name)
                for ins in stage.instructions:
                    source = copy_sources(ins)[1].get("from") if ins.keyword == "COPY" else None
                    if source in self.stages:
                        todo.append(source)
        return needed

    def effective(self, target: str | None = None) -> list[Instruction]:
        """Every instruction that builds ``target``, in order (its parents' first)."""
        return [ins for stage in self.chain(target) for ins in stage.instructions]

    def env(self, target: str | None = None) -> dict[str, str]:
        """The environment the target's image sets (ENV, parents' included, build arguments substituted)."""
        env: dict[str, str] = {}
        args = self.args(target)
        for ins in self.effective(target):
            if ins.keyword != "ENV":
                continue
            words = shlex.split(substitute(ins.args, args))
            if "=" not in words[0]:
                env[words[0]] = " ".join(words[1:])
            else:
                env.update(word.split("=", 1) for word in words)
        return env

    def args(self, target: str | None = None) -> dict[str, str]:
        """The target's build arguments: ``build_args``, else the defaults (``ARG K`` takes the global one)."""
        result = {}
        for ins in self.effective(target):
            if ins.keyword == "ARG":
                key, has_default, value = (part.strip() for part in ins.args.partition("="))
                if key in self.build_args:
                    result[key] = self.build_args[key]
                elif has_default:
                    result[key] = value
                elif key in self.global_args:
                    result[key] = self.global_args[key]
        return result

    def last(self, keyword: str, target: str | None = None) -> Instruction | None:
        """The target's last instruction of a kind (USER, CMD, HEALTHCHECK …)."""
        found = [ins for ins in self.effective(target) if ins.keyword == keyword]
        return found[-1] if found else None


def copy_sources(ins: Instruction) -> tuple[list[str], dict[str, str]]:
    """The sources and flags of a COPY."""
    words = shlex.split(ins.args)
    flags = dict(w[2:].split("=", 1) if "=" in w else (w[2:], "") for w in words if w.startswith("--"))
    paths = [w for w in words if not w.startswith("--")]
    return paths[:-1], flags


def copies_kit_code(ins: Instruction) -> bool:
    """True for a COPY from the build context of the kit's code, README or pyproject."""
    if ins.keyword not in ("COPY", "ADD"):
        return False
    sources, flags = copy_sources(ins)
    return "from" not in flags and any(src.rstrip("/").split("/")[0] in KIT_SOURCES for src in sources)


def is_dependency_install(ins: Instruction) -> bool:
    """A RUN that installs third-party packages from a pinned requirement file."""
    return ins.keyword == "RUN" and re.search(r"pip install .*-r /tmp/requirements/", ins.args) is not None


def is_weights_step(ins: Instruction) -> bool:
    """A RUN that fetches weights, or a COPY of weights from another stage."""
    if ins.keyword == "RUN":
        return "attempt_download_asset" in ins.args or "export.py" in ins.args
    return ins.keyword == "COPY" and "from" in copy_sources(ins)[1] and "weights" in ins.args


def layer_order_problems(dockerfile: Dockerfile, target: str) -> list[str]:
    """Why editing the kit's code would re-run a dependency install or a weights step in ``target``, if it would."""
    steps = dockerfile.effective(target)
    code = [i for i, ins in enumerate(steps) if copies_kit_code(ins)]
    installs = [i for i, ins in enumerate(steps) if is_dependency_install(ins)]
    problems = []
    if not installs:
        problems.append(f"{target}: no pinned dependency install (pip install --no-deps -r /tmp/requirements/…)")
    if not code:
        return problems
    first_code = code[0]
    for i, ins in enumerate(steps):
        if i > first_code and (is_dependency_install(ins) or (is_weights_step(ins) and ins.keyword == "COPY")):
            problems.append(
                f"{target}: line {ins.line} ({ins.keyword} {ins.args[:60]}…) comes after the kit's code is copied "
                f"(line {steps[first_code].line})"
            )
        if i > first_code and ins.keyword == "RUN" and "attempt_download_asset" in ins.args:
            problems.append(f"{target}: the weights download (line {ins.line}) comes after the kit's code is copied")
    return problems

"""MkDocs hook: publish the files the workshop pages link to, and the learners' copies of the notebooks.

The pages link to files by relative paths, which also work in an editor:

- ``../student/NN_name.ipynb`` is the learner's own copy of a notebook (``make student`` writes it; it is
  not committed). The site publishes a fresh learners' copy in its place, generated from
  ``notebooks/NN_name.ipynb`` with the solutions stripped, exactly as ``make student`` would: a learner who
  downloads it from the site gets the exercise, never the answer. The link fails the strict build when no
  instructors' notebook of that name exists.
- any other repository file (``../docker-compose.yml``) is copied into the site under ``repo/`` and the link
  points there, so the site works offline (``make docs``). A link to a file that does not exist is left
  alone, so ``mkdocs build --strict`` still fails on it. Markdown files outside the workshop are not
  published (they would be pages outside the navigation).

And one change to the HTML: inline code breaks only between its words, never inside one, so a flag such as
``--allow-unauthenticated`` is never cut after one of its hyphens: a span without a space gets the class
``nowrap``, and each word of a span with spaces is wrapped in ``<span class="nowrap">`` (the text, hence
what a copy gives, is unchanged). ``workshop/stylesheets/extra.css`` styles the class; code blocks scroll
instead of wrapping.
"""

from __future__ import annotations

import posixpath
import re
import sys
import tempfile
from pathlib import Path

from mkdocs.structure.files import File

PREFIX = "repo"
STUDENT = "student"
LINK = re.compile(r"(\]\()([^)\s#]+)((?:#[^)\s]*)?\))")
INLINE_CODE = re.compile(r"<code>([^<\n]+)</code>")  # inline: no tag (highlighting) and no line break inside
_published: dict[tuple[str, str], str] = {}  # (page src_uri, link) -> published src_uri
_generated = tempfile.TemporaryDirectory(prefix="mkdocs-student-")  # the learners' copies of this build


def config_root(config) -> Path:
    """The repository root: where mkdocs.yml is."""
    return Path(config.config_file_path).resolve().parent


def _target_path(config, page_uri: str, target: str) -> Path | None:
    """Where a relative link points on disk, or None for a URL or an absolute path."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("/"):
        return None
    return (Path(config.docs_dir).resolve() / posixpath.dirname(page_uri) / target).resolve()


def _repository_file(config, path: Path) -> str | None:
    """``path`` relative to the repository root, if it is a repository file outside the docs."""
    docs, root = Path(config.docs_dir).resolve(), config_root(config)
    if path.is_relative_to(docs) or not path.is_relative_to(root) or not path.is_file() or path.suffix == ".md":
        return None
    return path.relative_to(root).as_posix()


def _learners_copy(config, path: Path) -> str | None:
    """Generate the learners' copy that ``path`` (``student/NN_name.ipynb``) names; its site URI, or None."""
    root = config_root(config)
    if path.parent != root / STUDENT or path.suffix != ".ipynb":
        return None
    source = root / "notebooks" / path.name
    if not source.is_file():
        return None
    if str(root) not in sys.path:  # the repository's own code, not whichever copy is installed
        sys.path.insert(0, str(root))
    from yolo_service.workshop.teaching import write_student_notebook

    write_student_notebook(source, Path(_generated.name) / STUDENT / path.name)  # again on each build: fresh
    return f"{STUDENT}/{path.name}"


def on_files(files, config):
    """Add every repository file and every learners' copy that a page links to."""
    _published.clear()
    for page in list(files.documentation_pages()):
        for _, target, _ in LINK.findall(page.content_string):
            path = _target_path(config, page.src_uri, target)
            if path is None:
                continue
            if (uri := _learners_copy(config, path)) is not None:
                source = Path(_generated.name) / uri
            elif (relative := _repository_file(config, path)) is not None:
                uri, source = f"{PREFIX}/{relative}", config_root(config) / relative
            else:
                continue
            if files.get_file_from_path(uri) is None:
                files.append(File.generated(config, uri, abs_src_path=str(source)))
            _published[(page.src_uri, target)] = uri
    return files


def on_page_markdown(markdown, page, config, files):
    """Point the links to repository files and learners' copies at their published copies."""

    def rewrite(match: re.Match) -> str:
        uri = _published.get((page.file.src_uri, match.group(2)))
        if uri is None:
            return match.group(0)
        return match.group(1) + posixpath.relpath(uri, posixpath.dirname(page.file.src_uri) or ".") + match.group(3)

    return LINK.sub(rewrite, markdown)


def _unbreakable_words(match: re.Match) -> str:
    text = match.group(1)
    if not re.search(r"\s", text):
        return f'<code class="nowrap">{text}</code>'
    words = [w if not w or w.isspace() else f'<span class="nowrap">{w}</span>' for w in re.split(r"(\s+)", text)]
    return f"<code>{''.join(words)}</code>"


def on_page_content(html, page, config, files):
    """Inline code breaks between its words only: ``--allow-unauthenticated`` stays in one piece."""
    return INLINE_CODE.sub(_unbreakable_words, html)

"""MkDocs hook: publish the repository files that the workshop pages link to (notebooks, compose file…).

The pages link to the repository's files by relative paths (``../notebooks/01_concepts.ipynb``), which work
on GitHub and in an editor. MkDocs only knows the files under ``docs_dir``, so this hook copies each linked
repository file into the site under ``repo/`` and points the link there: the site works offline (``make
docs``) and its notebooks download. A link to a file that does not exist is left alone, so ``mkdocs build
--strict`` still fails on it. Markdown files outside the workshop are not published (they would be pages
outside the navigation): link them from the README, not from the workshop.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File

PREFIX = "repo"
LINK = re.compile(r"(\]\()([^)\s#]+)((?:#[^)\s]*)?\))")
_published: dict[tuple[str, str], str] = {}  # (page src_uri, link) -> published src_uri


def config_root(config) -> Path:
    """The repository root: where mkdocs.yml is."""
    return Path(config.config_file_path).resolve().parent


def _repository_file(config, page_uri: str, target: str) -> str | None:
    """The link's target as a path relative to the repository root, if it is a repository file outside the docs."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("/"):
        return None
    docs, root = Path(config.docs_dir).resolve(), config_root(config)
    path = (docs / posixpath.dirname(page_uri) / target).resolve()
    if path.is_relative_to(docs) or not path.is_relative_to(root) or not path.is_file() or path.suffix == ".md":
        return None
    return path.relative_to(root).as_posix()


def on_files(files, config):
    """Add every repository file that a page links to, under ``repo/``."""
    _published.clear()
    for page in list(files.documentation_pages()):
        for _, target, _ in LINK.findall(page.content_string):
            relative = _repository_file(config, page.src_uri, target)
            if relative is None:
                continue
            uri = f"{PREFIX}/{relative}"
            if files.get_file_from_path(uri) is None:
                files.append(File.generated(config, uri, abs_src_path=str(config_root(config) / relative)))
            _published[(page.src_uri, target)] = uri
    return files


def on_page_markdown(markdown, page, config, files):
    """Point the links to repository files at their published copies."""

    def rewrite(match: re.Match) -> str:
        uri = _published.get((page.file.src_uri, match.group(2)))
        if uri is None:
            return match.group(0)
        return match.group(1) + posixpath.relpath(uri, posixpath.dirname(page.file.src_uri) or ".") + match.group(3)

    return LINK.sub(rewrite, markdown)

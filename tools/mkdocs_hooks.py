"""MkDocs hooks for the documentation site (mkdocs.yml).

- The JSON schemas (src/ratiofactory/schemas/<version>/*.json) are served at
  /schemas/<version>/, where their ``$id``s point.
- The off-shell example's README and figures are served under /examples/offshell/, and
  the pages' ``../examples/`` links (right on GitHub, where docs/ is a folder of the
  repository) are rewritten to that place.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent


def on_files(files: Files, config) -> Files:
    site = config["site_dir"]
    package = ROOT / "src" / "ratiofactory"
    for path in sorted((package / "schemas").rglob("*.json")):
        files.append(File(path.relative_to(package).as_posix(), str(package), site, False))
    example = ROOT / "examples" / "offshell"
    for path in [example / "README.md", *sorted((example / "figures").glob("*.png"))]:
        files.append(File(path.relative_to(ROOT).as_posix(), str(ROOT), site, False))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    return markdown.replace("](../examples/", "](examples/")

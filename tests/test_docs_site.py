"""The documentation site's promises that a test can keep: metadata in one place, every
public function of the main namespaces with a runnable example, help() that describes
the package. (The site itself is built with `mkdocs build --strict` by .ci/run.)"""

from __future__ import annotations

import json
import pydoc
import re
from pathlib import Path

import ratiofactory

ROOT = Path(__file__).resolve().parent.parent


def test_help_describes_the_package():
    text = pydoc.render_doc(ratiofactory, renderer=pydoc.plaintext)
    for word in ("Workspace", "Model", "infer", "toys", "NSBI"):
        assert word in text


def test_citation_and_changelog_match_the_version():
    citation = (ROOT / "CITATION.cff").read_text()
    assert re.search(r"^version: (.+)$", citation, re.MULTILINE).group(1) == ratiofactory.__version__
    assert "## [Unreleased]" in (ROOT / "CHANGELOG.md").read_text()


def test_schema_ids_point_to_the_served_files():
    """mkdocs.yml's site_url + the path the site serves each schema file at (the hook
    copies src/ratiofactory/schemas/<version>/ to /schemas/<version>/)."""
    site = re.search(r"^site_url: (\S+)$", (ROOT / "mkdocs.yml").read_text(), re.MULTILINE).group(1)
    schemas = ROOT / "src" / "ratiofactory" / "schemas"
    files = sorted(schemas.rglob("*.json"))
    assert files
    for path in files:
        served = site.rstrip("/") + "/schemas/" + path.relative_to(schemas).as_posix()
        assert json.loads(path.read_text())["$id"] == served

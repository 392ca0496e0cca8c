"""docs/compatibility.md is what the conformance matrix generates (run `make docs` after
changing the matrix)."""

from __future__ import annotations

from pathlib import Path

from tests.conformance.report import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "compatibility.md"


def test_compatibility_doc_is_generated_from_the_matrix() -> None:
    assert DOC.read_text() == render(), "docs/compatibility.md is stale: run `make docs`"

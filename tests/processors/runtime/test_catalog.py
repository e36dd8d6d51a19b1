"""The view catalog in processors/VIEWS.md matches the code, and every documented column exists in
the published files."""

from __future__ import annotations

from pathlib import Path

from processors import REGISTRY
from processors.runtime.catalog import render_catalog
from processors.runtime.publish import published_views

ROOT = Path(__file__).resolve().parents[3]


def test_catalog_is_up_to_date():
    assert (ROOT / "processors" / "VIEWS.md").read_text() == render_catalog(), \
        "run: python scripts/gen_view_catalog.py"


def test_every_view_and_column_is_documented():
    text = render_catalog()
    for cls in REGISTRY.values():
        for view, _ in published_views(cls()):
            assert f"`{view.name}`" in text
            for c in view.columns:
                assert c.doc.strip(), f"{view.name}.{c.name} has no meaning written down"
                if not c.name.startswith("_"):
                    assert f"`{c.name}`" in text

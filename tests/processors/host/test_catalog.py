"""The view catalog in processors/VIEWS.md and its data form processors/data/views.json (what `tokenledger query`
reads instead of importing the processors) match the code, and every documented column exists in the published
files."""

from __future__ import annotations

from pathlib import Path

from processors import REGISTRY
from processors.host.catalog import catalog_json, render_catalog
from processors.runtime.publish import published_views

ROOT = Path(__file__).resolve().parents[3]


def test_catalog_is_up_to_date():
    assert (ROOT / "processors" / "VIEWS.md").read_text() == render_catalog(), \
        "run: python scripts/gen_view_catalog.py"
    assert (ROOT / "processors" / "data" / "views.json").read_text() == catalog_json(), \
        "run: python scripts/gen_view_catalog.py"


def test_query_builds_its_views_from_the_data_without_loading_a_processor(tmp_path):
    """The catalog `query` uses equals the classes' own definitions, and reading it imports no processor module."""
    import subprocess
    import sys

    code = ("import sys; from ledger.sdk.home import HomeLayout; from processors.views import catalog; "
            f"from pathlib import Path; c = catalog(HomeLayout(Path({str(tmp_path)!r}))); "
            "print(len(c), sorted(m for m in sys.modules if m.startswith('processors.') and m.split('.')[1] in "
            "('allocations', 'budgets', 'journal', 'notary', 'reputation', 'settlements')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split(" ", 1)
    assert out[1].strip() == "[]"
    from ledger.sdk.home import HomeLayout
    from processors.views import catalog

    got = [(v.processor, v.view) for v in catalog(HomeLayout(tmp_path))]
    want = [(name, view) for name in sorted(REGISTRY) for view, _ in published_views(REGISTRY[name]())]
    assert got == want and int(out[0]) == len(want)


def test_every_view_and_column_is_documented():
    text = render_catalog()
    for cls in REGISTRY.values():
        for view, _ in published_views(cls()):
            assert f"`{view.name}`" in text
            for c in view.columns:
                assert c.doc.strip(), f"{view.name}.{c.name} has no meaning written down"
                if not c.name.startswith("_"):
                    assert f"`{c.name}`" in text

#!/usr/bin/env python3
"""Write processors/VIEWS.md, the view catalog, and processors/data/views.json, the same definitions as data, from
the processors' view definitions."""

from pathlib import Path

from processors.host.catalog import catalog_json, render_catalog

OUT = Path(__file__).resolve().parent.parent / "processors" / "VIEWS.md"
DATA = Path(__file__).resolve().parent.parent / "processors" / "data" / "views.json"

if __name__ == "__main__":
    OUT.write_text(render_catalog())
    DATA.parent.mkdir(exist_ok=True)
    DATA.write_text(catalog_json())
    print(f"wrote {OUT} and {DATA}")

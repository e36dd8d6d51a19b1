#!/usr/bin/env python3
"""Write processors/VIEWS.md, the view catalog, from the processors' view definitions."""

from pathlib import Path

from processors.host.catalog import render_catalog

OUT = Path(__file__).resolve().parent.parent / "processors" / "VIEWS.md"

if __name__ == "__main__":
    OUT.write_text(render_catalog())
    print(f"wrote {OUT}")

"""Helpers for the importer tests (tests/ledger/sources): a real home with an ``importer`` signer, an Emitter signing
as it, ``import_files`` run through that Emitter, and the log read back.

Each test module keeps its own ``home`` fixture (one line over ``importer_home``) so that whether the signer holds
a backfill grant stays visible where the tests rely on it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer

from ledger.cli.imports import IMPORTER_BACKFILL_US, register
from ledger.integrity.verify import audit
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import Home
from ledger.sources.importers import ImportSummary, import_files, imported_events
from ledger.testing.homes import grant, make_home

SIGNER = "importer"


def importer_home(tmp_path: Path, *, backfill: bool = False) -> Home:
    """A home at ``tmp_path/home`` with the ``importer`` signer registered; ``backfill``: with the 30-day backfill
    grant `tokenledger import` gives it, which naming each call's agent (context.agent) needs."""
    home = make_home(tmp_path / "home", agents=(SIGNER,))
    if backfill:
        grant(home, SIGNER, "backfill", max_age_us=IMPORTER_BACKFILL_US)
    return home


@contextlib.contextmanager
def importer(home: Home, signer: str = SIGNER) -> Iterator[Emitter]:
    """An Emitter signing as ``signer`` on the home's log, flushing only when it closes."""
    log = home.open_log()
    try:
        with Emitter(log, home.load_key(signer), topic=home.topic, state_dir=home.state_dir,
                     background_flush=False) as em:
            yield em
    finally:
        log.close()


def run_import(home: Home, kind: str, paths: list[Path], **options: Any) -> ImportSummary:
    """``import_files(kind, paths, ...)`` through an ``importer`` Emitter."""
    with importer(home) as em:
        return import_files(kind, paths, em, **options)


def import_runner(kind: str) -> Callable[..., ImportSummary]:
    """``run_import`` with its kind fixed: ``run(home, paths, **options)``."""
    def run(home: Home, paths: list[Path], **options: Any) -> ImportSummary:
        return run_import(home, kind, paths, **options)
    return run


def events_of(home: Home, signer: str = SIGNER) -> list[Any]:
    """The events ``signer`` appended, in log order."""
    log = home.open_log()
    try:
        return list(imported_events(log, home.topic, signer))
    finally:
        log.close()


def log_ends(home: Home) -> tuple[int, ...]:
    """The end offset of every partition of the home's topic (unchanged when an import appends nothing)."""
    log = home.open_log()
    try:
        return tuple(log.end_offset(home.topic, p) for p in range(log.partitions(home.topic)))
    finally:
        log.close()


def audit_ok(home: Home) -> bool:
    """Whether the home's ledger topics pass the audit (signatures, chains, anchors)."""
    log = home.open_log()
    try:
        return audit(log, home.ledger_topics, home.anchors()).ok
    finally:
        log.close()


def write(path: Path, content: str | bytes) -> Path:
    """``content`` written to ``path`` (bytes as they are, text as text), its folders made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def kinds(usage: Any) -> tuple[int, int, int, int, int]:
    """(input, output, cache read, cache write, reasoning) of one LlmUsage."""
    return (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens,
            usage.reasoning_tokens)


def with_field(base: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """``base`` (deep-copied) with the field at a dotted path set to ``value`` (``...`` deletes it); a number in the
    path is a list index."""
    out = json.loads(json.dumps(base))
    *parents, last = dotted.split(".")
    node = out
    for name in parents:
        node = node[int(name)] if isinstance(node, list) else node[name]
    if value is ...:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return out


def cli_app() -> typer.Typer:
    """A Typer app with only the ``import`` command, as `tokenledger` registers it."""
    app = typer.Typer()
    register(app)

    @app.callback()
    def main() -> None:
        """tokenledger (test app)"""
    return app

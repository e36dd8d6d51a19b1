"""The service one ``tokenledger serve`` process runs: the home, one open log, the token table, and the
per-feature singletons (emitter pools, batch gates) created on first use.

Nothing here is a source of truth: the log is, and the published views. A second instance on the same home (behind a
load balancer) builds the same ``Service``; custodial agents (the service signs for them) should be routed to one
instance each, since one emitter per agent per home holds that agent's lock.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from starlette.requests import Request

from ledger.log import Log
from ledger.sdk.home import Home, resolve_log_url
from ledger.sdk.tokens import TokenStore

T = TypeVar("T")
PUBLISHED_STATE_FILE = "_state.json"  # what a processor's publisher writes beside its views (runtime.publish)


@dataclass
class Service:
    home: Home
    log_url: str
    log: Log
    tokens: TokenStore
    started_monotonic: float = field(default_factory=time.monotonic)
    extras: dict[str, Any] = field(default_factory=dict)
    _closers: list[Callable[[], None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, home_path: Path, log_url: str | None = None) -> Service:
        home = Home.open(home_path)
        url = resolve_log_url(log_url, home)
        log = home.open_log(url)
        try:
            return cls(home, url, log, TokenStore(home.tokens_file))
        except BaseException:
            log.close()
            raise

    def now_us(self) -> int:
        """The service's wall clock: the one place it is read (stamps events a client sent without a time, and
        judges token expiry; readers judge claimed times against the log's append time, not this)."""
        return time.time_ns() // 1000

    def extra(self, name: str, make: Callable[[], T]) -> T:
        """The per-process singleton ``name``, made by ``make()`` on first use (thread-safe)."""
        got = self.extras.get(name)
        if got is None:
            with self._lock:
                got = self.extras.get(name)
                if got is None:
                    got = self.extras[name] = make()
        return got

    def freshness(self, *processors: str) -> dict[str, dict[str, Any]]:
        """How fresh the published views of ``processors`` are: when each last published (Unix seconds), its age in
        seconds and the log positions it covers; ``{"published_at": None, ...}`` for one that never published."""
        out: dict[str, dict[str, Any]] = {}
        now = time.time()
        for name in processors:
            state = published_state(self.home, name)
            at = None if state is None else state["published_at"]
            out[name] = {"published_at": at, "age_s": None if at is None else round(max(0.0, now - at), 3),
                         "positions": None if state is None else state.get("positions")}
        return out

    def on_close(self, fn: Callable[[], None]) -> None:
        self._closers.append(fn)

    def close(self) -> None:
        """Run the closers (last registered first), then close the token table and the log."""
        errors: list[BaseException] = []
        for fn in reversed(self._closers):
            try:
                fn()
            except Exception as e:  # noqa: BLE001 (one pool failing to close must not keep the log open)
                errors.append(e)
        self._closers.clear()
        self.tokens.close()
        self.log.close()
        if errors:
            raise errors[0]


def published_state(home: Home, processor: str) -> dict[str, Any] | None:
    """What ``processor`` wrote beside its views when it last published (``published_at`` as a float), or None. A
    sharded processor (``processors.runtime.shards``): its shards' states together, as fresh as the stalest shard
    (the oldest ``published_at``) with their positions merged (a data partition is one shard's; control: the
    lowest); None until every shard has published."""
    state = _read_published(home.views_dir(processor))
    shards = home.shard_views_dirs(processor)
    if state is not None or not shards:
        return state
    parts = [_read_published(d) for d in shards.values()]
    if any(p is None for p in parts):
        return None
    positions: dict[str, int] = {}
    for p in parts:
        assert p is not None
        for tp, off in p.get("positions", {}).items():
            positions[tp] = min(positions[tp], off) if tp in positions else off
    oldest = min((p for p in parts if p is not None), key=lambda p: p["published_at"])
    return {**oldest, "processor": processor, "positions": dict(sorted(positions.items())), "shards": sorted(shards)}


def _read_published(directory: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((directory / PUBLISHED_STATE_FILE).read_text())
        state["published_at"] = float(state["published_at"])
        return state  # type: ignore[no-any-return]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def service(request: Request) -> Service:
    """FastAPI dependency: the process's service."""
    return request.app.state.service  # type: ignore[no-any-return]

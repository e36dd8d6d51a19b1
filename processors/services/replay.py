"""The processors' health and reproducibility: status, state digests, and replay from offset 0.

``status`` reads each processor's status file; ``digest`` is the live processor's state digest with
the positions it reflects; ``replay`` rebuilds a processor's state from offset 0 into a fresh file up
to the live positions and compares the digests, and the rebuilt digest with the StateCheckpoints the
processor signed at those positions. A replay that differs is a result (``equal`` is False), not an
error: the caller decides the exit code.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.errors import ValidationError
from ledger.integrity.checkpoints import StateCheck, check_state, control_keyring, digest_algorithm, read_checkpoints
from ledger.log import Log
from ledger.sdk.home import SHARD_DIR_RE, Home
from ledger.wire.exchange import ItemKey
from processors import REGISTRY, get
from processors.host import service
from processors.host.supervisor import pid_alive
from processors.runtime.exchange import RELEASED_META, load_item_key, positions_through
from processors.runtime.shards import Shard, all_shards, parse_shard
from processors.runtime.store import DIGEST_ALGORITHM, Store
from processors.services.proofs import check_state_checkpoints

NEVER_RUN = "never run"


@dataclass(frozen=True)
class ProcessorStatus:
    """What a processor last wrote to its status file (``state`` "dead": it says running, its pid is gone)."""

    processor: str
    state: str
    pid: int | None = None
    positions: dict[str, int] | None = None
    lag: int | None = None
    events_per_s: float | None = None
    events: int | None = None
    rejected: int | None = None
    last_error: str | None = None
    updated_s_ago: float | None = None  # None: never ran

    def to_dict(self) -> dict[str, Any]:
        if self.updated_s_ago is None:
            return {"processor": self.processor, "state": self.state}
        return {"processor": self.processor, "state": self.state, "pid": self.pid, "positions": self.positions,
                "lag": self.lag, "events_per_s": self.events_per_s, "events": self.events,
                "rejected": self.rejected, "last_error": self.last_error, "updated_s_ago": self.updated_s_ago}


@dataclass(frozen=True)
class Digest:
    """A processor's state digest and the input positions (``topic/partition`` → offset) it reflects.
    ``source`` says where it came from (state file, published, none...); ``file``: a rebuilt state file."""

    processor: str
    positions: dict[str, int]
    digest: str | None
    source: str
    tables: dict[str, Any] | None = None
    file: str | None = None
    # a sharded processor (processors.runtime.shards): per shard label, its positions, digest and source (and file);
    # ``digest`` is then the combined digest of the union of the shards, ``positions`` their merged positions
    shards: dict[str, dict[str, Any]] | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "") -> Digest:
        return cls(processor=d["processor"], positions=dict(d["positions"]), digest=d["digest"],
                   source=d.get("source", source), tables=d.get("tables"), file=d.get("file"),
                   shards=d.get("shards"))

    @property
    def records(self) -> int:
        """How many log records the positions cover (a replay's amount of work)."""
        return sum(self.positions.values())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"processor": self.processor, "positions": self.positions, "digest": self.digest}
        if self.tables is not None:
            out["tables"] = self.tables
        if self.file is not None:
            out["file"] = self.file
        else:
            out["source"] = self.source
        if self.shards is not None:
            out["shards"] = self.shards
        return out


@dataclass(frozen=True)
class Replay:
    """A rebuilt state against the live one and against the processor's signed StateCheckpoints."""

    processor: str
    live: Digest
    rebuilt: Digest
    state_checkpoint: StateCheck

    @property
    def equal(self) -> bool:
        return self.rebuilt.digest == self.live.digest and self.state_checkpoint.match is not False

    def to_dict(self) -> dict[str, Any]:
        return {"processor": self.processor, "equal": self.equal, "live": self.live.to_dict(),
                "replay": self.rebuilt.to_dict(), "state_checkpoint": self.state_checkpoint.to_dict()}


def status(home: Home) -> list[ProcessorStatus]:
    """Every registered processor's last status, sorted by name; a sharded one's, one row per shard that wrote a
    status file (``<name>/shard-I-of-N``), after its own row when it also ran as one instance."""
    rows = []
    for name in sorted(REGISTRY):
        shards = [p for p in sorted(home.processor_dir(name).glob("shard-*-of-*/" + service.STATUS_FILE))
                  if SHARD_DIR_RE.fullmatch(p.parent.name)]
        own = service.status_file(home, name)
        if own.exists() or not shards:
            rows.append(_status_row(name, own))
        rows.extend(_status_row(f"{name}/{p.parent.name}", p) for p in shards)
    return rows


def _status_row(name: str, path: Path) -> ProcessorStatus:
    try:
        s = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return ProcessorStatus(name, NEVER_RUN)
    running = s.get("state") == "running" and pid_alive(int(s.get("pid", 0)))
    state = s.get("state", "?") if running or s.get("state") != "running" else "dead"
    return ProcessorStatus(name, state, pid=s.get("pid"), positions=s.get("positions"), lag=s.get("lag"),
                           events_per_s=s.get("events_per_s"), events=s.get("events"),
                           rejected=s.get("rejected"), last_error=s.get("last_error"),
                           updated_s_ago=round(time.time() - s.get("updated_at", 0), 1))


def digest(home: Home, name: str) -> Digest:
    """The live digest of processor ``name`` (from its file when it is not running, else what it published); of a
    sharded one, the combined digest of its shards (``service.combined_digest``)."""
    get(name)
    n = service.shard_count(home, name)
    if n is None:
        return Digest.from_dict(service.live_digest(home, name))
    d = service.combined_digest([service.shard_live_digest(home, name, sh) for sh in all_shards(n)])
    return Digest.from_dict({**d, "source": f"{n} shards combined"})


def replayable(home: Home, name: str) -> Digest:
    """The live digest a replay of ``name`` compares with; an error when there is none yet."""
    live = digest(home, name)
    if live.digest is None:
        raise ValidationError("processor", name, f"has no state to compare with ({live.source})",
                              hint=f"run it first: tokenledger run {name} --until-caught-up")
    if digest_algorithm(live.digest) != DIGEST_ALGORITHM:
        # a running processor started before an upgrade publishes the old algorithm's digest: a replay's
        # could never equal it, and saying the states diverge would be false
        raise ValidationError("digest", live.digest, f"was computed by another digest algorithm than this "
                              f"version's ({DIGEST_ALGORITHM})",
                              hint=f"restart the processor so it publishes a current digest: tokenledger run {name}")
    return live


def replay(home: Home, name: str, log: Log, live: Digest, *, keep: bool = False,
           progress: Callable[[int], None] | None = None) -> Replay:
    """Rebuild ``name``'s state from offset 0 into a fresh file up to ``live``'s positions (``progress``
    gets the records read per step) and compare; the rebuilt file is removed unless ``keep``."""
    if live.shards is not None and get(name).exchanges and not get(name).shardable:
        return _replay_exchange(home, name, log, live, keep=keep, progress=progress)
    if live.shards is not None:
        return _replay_shards(home, name, log, live, keep=keep, progress=progress)
    rebuilt = Digest.from_dict(service.replay(home, name, log, positions=live.positions, progress=progress))
    assert rebuilt.digest is not None  # a replay always computes one
    signed = check_state_checkpoints(home, log, name, rebuilt.positions, rebuilt.digest)
    if not keep and rebuilt.file is not None:
        shutil.rmtree(Path(rebuilt.file).parent, ignore_errors=True)
    return Replay(processor=name, live=live, rebuilt=rebuilt, state_checkpoint=signed)


def _replay_exchange(home: Home, name: str, log: Log, live: Digest, *, keep: bool,
                     progress: Callable[[int], None] | None) -> Replay:
    """Shards of a processor sharded through the exchange (``processors.runtime.exchange``) hold, together, what one
    instance holds at the key through which they released: one instance rebuilt up to the input positions of that
    key is compared with their combined digest. The shards must have stopped at one key (run until caught up)."""
    assert live.shards is not None
    keys = {label: exchange_released(home, name, parse_shard(label.removeprefix("shard-").replace("-of-", "/"),
                                                                  "shard")) for label in sorted(live.shards)}
    if len(set(keys.values())) != 1 or None in keys.values():
        raise ValidationError("processor", name, "its shards did not stop at one point of the log",
                              released={k: list(v) if v else None for k, v in keys.items()},
                              hint=f"run them until caught up, then replay: tokenledger run {name} --instances "
                                   f"{len(keys)} --until-caught-up")
    released = next(iter(keys.values()))
    assert released is not None
    processor = get(name)()
    topics = [home.topic_for(t) for t in processor.topics]
    positions = {f"{tp[0]}/{tp[1]}": o for tp, o in positions_through(log, topics, released).items()}
    rebuilt = Digest.from_dict(service.replay(home, name, log, positions=positions, progress=progress))
    if not keep and rebuilt.file is not None:
        shutil.rmtree(Path(rebuilt.file).parent, ignore_errors=True)
    return Replay(processor=name, live=live, rebuilt=rebuilt, state_checkpoint=StateCheck(processor=name))


def exchange_released(home: Home, name: str, shard: Shard) -> ItemKey | None:
    """The key through which shard ``shard`` of ``name`` has folded (from its state file; None before its first
    release). ``StoreError`` while the shard runs (its file is locked): stop it first."""
    store = Store(service.state_file(home, name, shard), get(name).views, read_only=True)
    try:
        return load_item_key(store.meta(RELEASED_META, ""))
    finally:
        store.close()


def _replay_shards(home: Home, name: str, log: Log, live: Digest, *, keep: bool,
                   progress: Callable[[int], None] | None) -> Replay:
    """Each shard rebuilt up to its own live positions, the rebuilt digests combined and compared with the live
    combined one; each shard's rebuilt digest against the StateCheckpoints that shard signed at its positions."""
    assert live.shards is not None
    parts = []
    signed = StateCheck(processor=name)
    for label in sorted(live.shards):
        sh = parse_shard(label.removeprefix("shard-").replace("-of-", "/"), "shard")
        part = service.shard_replay(home, name, log, sh, positions=live.shards[label]["positions"])
        if progress is not None:
            progress(sum(part["positions"].values()))
        ring = control_keyring(log, home.control_topic, home.anchors())
        entries = read_checkpoints(log, home.topic_for("checkpoints"), ring)
        check = check_state(entries, name, (service.checkpoint_signer_id(name, sh), service.signer_id(name, sh)),
                            part["positions"], part["digest"])
        signed.checked.extend(check.checked)
        signed.other_algorithm.extend(check.other_algorithm)
        signed.latest = check.latest or signed.latest
        if not keep:
            shutil.rmtree(Path(part["file"]).parent, ignore_errors=True)
        parts.append(part)
    d = service.combined_digest(parts)
    rebuilt = Digest.from_dict({**d, "source": f"{len(parts)} shards replayed"})
    return Replay(processor=name, live=live, rebuilt=rebuilt, state_checkpoint=signed)


__all__ = ["Digest", "ProcessorStatus", "Replay", "digest", "replay", "replayable", "status"]

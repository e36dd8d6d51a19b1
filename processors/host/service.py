"""Running one processor against a ledger home, in this process: the edge where the runtime meets
files, keys, signals and the status file.

    <home>/processors/<name>/state.duckdb   the processor's state (one writer: this process)
    <home>/processors/<name>/status.json    position, lag, events/s, last error (for `tokenledger status`)
    <home>/views/<name>/...                 published views (Parquet) and _state.json

(the directories come from ``Home.processor_dir`` and ``Home.views_dir``: the home owns the layout).
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from ledger import limits
from ledger.errors import StoreError, ValidationError
from ledger.integrity.checkpoints import control_keyring
from ledger.integrity.keys import SigningKey
from ledger.log import Log
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import SHARD_DIR_RE, Home
from ledger.sdk.registration import ensure_notary_grant, register_signer
from ledger.wire.events import Grant, StateCheckpoint
from ledger.wire.vocab import Capability
from processors import get
from processors.runtime.exchange import ROUTER_FILE, OwnerRunner, RouterRunner
from processors.runtime.processor import Derived, Processor
from processors.runtime.publish import Publisher, parse_positions, read_state
from processors.runtime.runner import Runner
from processors.runtime.shards import Shard, combine, hidden_rows, require_shardable, shard_signer_suffix
from processors.runtime.store import Store

POLL_IDLE_S = 0.05  # sleep between empty polls
STATUS_EVERY_S = 0.5  # how often the status file is rewritten
DIGEST_EVERY_S = 10.0  # how often a caught-up processor computes and publishes its state digest
STATE_CHECKPOINT_META = "state_checkpoint_batch"  # _meta key: the batch last signed as a StateCheckpoint
STATE_FILE = "state.duckdb"  # in the processor's directory
STATUS_FILE = "status.json"  # in the processor's directory
CHECKPOINT_SIGNER_SUFFIX = ".checkpoints"  # processor.<name>.checkpoints signs its StateCheckpoints


def signer_id(name: str, shard: Shard | None = None) -> str:
    """The signer of the processor's derived events (its one derived topic) and of its published views; a shard's
    ``processor.<name>.shard-I-of-N`` (two instances signing as one signer would fork its chain)."""
    return f"processor.{name}{shard_signer_suffix(shard)}"


def checkpoint_signer_id(name: str, shard: Shard | None = None) -> str:
    """The signer of the processor's StateCheckpoints: a chain of their own, on <prefix>.checkpoints alone
    (``emit_state_checkpoint`` says why)."""
    return f"{signer_id(name, shard)}{CHECKPOINT_SIGNER_SUFFIX}"


def shard_label(shard: Shard | None) -> str | None:
    return None if shard is None else shard.label


def state_file(home: Home, name: str, shard: Shard | None = None) -> Path:
    """The processor's DuckDB state file (its one writer is the running processor, or shard)."""
    return home.processor_dir(name, shard_label(shard)) / STATE_FILE


def status_file(home: Home, name: str, shard: Shard | None = None) -> Path:
    return home.processor_dir(name, shard_label(shard)) / STATUS_FILE


def ensure_processor_key(home: Home, name: str, log: Log, shard: Shard | None = None) -> SigningKey:
    """The processor's signing key, created and registered (role=processor, by the operator) if new, and its
    state checkpoints' key likewise (``ensure_checkpoint_key``); the notary's also granted the ``notary``
    capability by the operator if the log does not hold that yet."""
    sid = signer_id(name, shard)
    path = home.key_path(sid)
    if not path.exists():
        register_signer(home, log, sid, role="processor")  # saves the new key once its registration is appended
    ensure_checkpoint_key(home, name, log, shard)  # both of its keys, registered together
    if name == "notary":
        # only a granted notary's checkpoints count: a home made before grants gets the grant once, here, and so does
        # each shard's signer (processor.notary.shard-I-of-N) before it signs any (processors/notary.py, Sharding)
        ring = control_keyring(log, home.control_topic, home.anchors())
        if shard is None:
            ensure_notary_grant(home, log, ring.granted(sid, Capability.NOTARY.value) is not None)
        elif ring.granted(sid, Capability.NOTARY.value) is None:
            with Emitter.for_operator(home, log) as em:
                em.emit(Grant(agent_id=sid, capability=Capability.NOTARY.value))
    return home.load_key(sid)


def ensure_checkpoint_key(home: Home, name: str, log: Log, shard: Shard | None = None) -> SigningKey:
    """The key of the processor's StateCheckpoint chain (``checkpoint_signer_id``), created and registered
    (role=processor, by the operator) if new: a home made before that chain existed gets it on the next start."""
    sid = checkpoint_signer_id(name, shard)
    if not home.key_path(sid).exists():
        register_signer(home, log, sid, role="processor")
    return home.load_key(sid)


def crash_hook(spec: str | None) -> Any:
    """Fault injection for crash tests: ``POINT:N`` kills this process with SIGKILL the N-th time the
    runner passes POINT (before_commit, inside_commit, after_commit, before_produce, after_produce)."""
    if not spec:
        return None
    point, _, n = spec.partition(":")
    remaining = {"n": int(n or 1)}

    def hook(p: str) -> None:
        if p == point:
            remaining["n"] -= 1
            if remaining["n"] <= 0:
                os.kill(os.getpid(), signal.SIGKILL)

    return hook


def open_runner(home: Home, name: str, log: Log, *, produce: bool = True,
                crash_at: str | None = None, shard: Shard | None = None) -> tuple[Runner, Store, Processor]:
    """The processor's runner on its state file; ``shard``: one instance of a sharded processor, on the shard's own
    file, positions and signers (``ShardingRefused`` before anything is created if the processor cannot shard)."""
    processor = get(name)()
    if shard is not None:
        require_shardable(processor, shard)
    if produce:
        check_layout(home, name, shard)
    d = home.processor_dir(name, shard_label(shard))
    d.mkdir(parents=True, exist_ok=True)
    key = ensure_processor_key(home, name, log, shard) if produce else None
    checkpoint_key = ensure_checkpoint_key(home, name, log, shard) if produce else None
    store = Store(d / STATE_FILE, processor.views, hidden=hidden_rows(processor, shard, home.control_topic))
    prefix = home.config.get("topic_prefix", "ledger")
    hook = crash_hook(crash_at)
    try:
        if shard is not None and processor.exchanges and not processor.shardable and key is not None:
            # a shard of a processor whose state crosses partitions: its router and its owner (runtime.exchange)
            router_store = Store(d / ROUTER_FILE, ())
            try:
                router = RouterRunner(get(name)(), log, router_store, shard=shard, key=key, anchors=home.anchors(),
                                      topic_prefix=prefix, crash_hook=hook)
                runner: Runner = OwnerRunner(processor, log, store, shard=shard, anchors=home.anchors(),
                                             topic_prefix=prefix, key=key, crash_hook=hook,
                                             checkpoint_key=checkpoint_key, router=router)
            except BaseException:
                router_store.close()
                raise
        else:
            runner = Runner(processor, log, store, anchors=home.anchors(), key=key, produce=produce,
                            topic_prefix=prefix, crash_hook=hook, checkpoint_key=checkpoint_key, shard=shard)
    except BaseException:
        store.close()
        raise
    return runner, store, processor


def close_runner(runner: Runner) -> None:
    """Close what the runner holds besides its store (a shard's router and its file)."""
    router = getattr(runner, "router", None)
    if router is not None:
        router.store.close()


def check_layout(home: Home, name: str, shard: Shard | None) -> None:
    """Refuse to start ``name`` as one instance where it runs as shards, or as shards of another count or beside
    an unsharded state: both would publish views whose union counts rows twice (``processors.views`` refuses to
    read such a layout); ``ValidationError`` before anything is created."""
    d = home.processor_dir(name)
    labels = sorted(p.name for p in d.glob("shard-*-of-*") if SHARD_DIR_RE.fullmatch(p.name)
                    and (p / STATE_FILE).exists()) if d.is_dir() else []
    single = (d / STATE_FILE).exists()
    if shard is None:
        clash = labels
    else:
        clash = [x for x in labels if not x.endswith(f"-of-{shard.count}")] + (["one instance"] if single else [])
    if clash:
        how = "as one instance" if shard is None else f"as {shard.count} instances"
        raise ValidationError("processor", name, f"cannot start {how}: it has state here as {', '.join(clash)}",
                              directory=str(d),
                              hint=f"run it as it ran before, or move the state under {d} and its views under "
                                   f"{home.views_dir(name)} away to rebuild it from the log in the new layout")


def write_status(home: Home, name: str, status: dict[str, Any], shard: Shard | None = None) -> None:
    d = home.processor_dir(name, shard_label(shard))
    d.mkdir(parents=True, exist_ok=True)
    status = {**status, "updated_at": time.time()}
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".status")
    with os.fdopen(fd, "w") as f:
        json.dump(status, f, indent=2, sort_keys=True)
    os.replace(tmp, d / STATUS_FILE)


def read_status(home: Home, name: str, shard: Shard | None = None) -> dict[str, Any]:
    """The processor's last status ({} when it never wrote one, or the file is torn)."""
    try:
        status = json.loads(status_file(home, name, shard).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return status if isinstance(status, dict) else {}


def note_failure(home: Home, name: str, error: BaseException | str, *, exit_code: int | None = None,
                 pid: int | None = None, shard: Shard | None = None) -> None:
    """Record why the processor is not running as its last error, keeping the rest of its last status
    (positions, counts): `tokenledger status` then says "failed" and why, not "dead" with no reason."""
    message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    write_status(home, name, {**read_status(home, name, shard), "processor": name, "state": "failed",
                              "pid": os.getpid() if pid is None else pid, "last_error": message,
                              "last_error_at": time.time(), "exit_code": exit_code}, shard)


def note_exit(home: Home, name: str, pid: int, exit_code: int, shard: Shard | None = None) -> None:
    """The supervisor saw worker ``pid`` exit with ``exit_code``: if its status still says it is running (it was
    killed, or died before it could write), record the exit as its last error."""
    status = read_status(home, name, shard)
    if status.get("state") == "running" and status.get("pid") == pid:
        how = f"killed by signal {-exit_code}" if exit_code < 0 else f"exited with code {exit_code}"
        note_failure(home, name, f"process {pid} {how} without reporting an error", exit_code=exit_code, pid=pid,
                     shard=shard)


def serve(home: Home, name: str, log: Log, *, exit_when_caught_up: bool = False, crash_at: str | None = None,
          max_records: int | None = None, shard: Shard | None = None) -> int:
    """Run the processor until SIGTERM/SIGINT (finishing the current batch) or, if asked, until caught up."""
    stopping = {"flag": False}

    def stop(signum: int, frame: Any) -> None:
        stopping["flag"] = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    served = Served(home, name, log, crash_at=crash_at, max_records=max_records, shard=shard)
    try:
        while not stopping["flag"]:
            if served.tick():  # idle: nothing to read
                if exit_when_caught_up and served.runner.caught_up():
                    break
                time.sleep(POLL_IDLE_S)
        served.finish()
    finally:
        served.close()
    return 0


class Served:
    """One processor, or one shard of one, served in this process: its runner on its state file, its published views,
    its background state digest and its edge. The loop around it owns the signals and the pacing: ``serve`` steps
    one; ``processors.host.group`` steps the shards a Kafka consumer group gave this process.

    ``status_extra``: more fields for its status file (a group member names its group)."""

    def __init__(self, home: Home, name: str, log: Log, *, crash_at: str | None = None,
                 max_records: int | None = None, shard: Shard | None = None,
                 status_extra: dict[str, Any] | None = None) -> None:
        self.home, self.name, self.shard = home, name, shard
        self.status_extra = dict(status_extra or {})
        self.runner, self.store, processor = open_runner(home, name, log, crash_at=crash_at, shard=shard)
        runner = self.runner
        previous = read_status(home, name, shard)
        # the last error outlives the restart it caused: status shows it until a newer one replaces it
        runner.stats.last_error = previous.get("last_error")
        self.last_error_at = previous.get("last_error_at")
        if max_records:
            runner.max_records = max_records
            if isinstance(runner, OwnerRunner) and runner.router is not None:
                runner.router.max_records = max_records  # a shard's router reads at the same pace
        assert runner.key is not None  # open_runner produces: the processor's key signs its derived events and views
        self.digester = BackgroundDigest(self.store)
        self.edge: Any = NoEdge()
        self.last_status = 0.0
        self.last_digest = 0.0
        try:
            self.publisher = Publisher(self.store, processor, home.views_dir(name, shard_label(shard)), key=runner.key,
                                       label=None if shard is None else f"{name}{shard_signer_suffix(shard)}")
        except BaseException:
            close_runner(runner)
            self.store.close()
            raise
        try:
            # a processor with an effect at the edge (deliveries: webhook POSTs) is driven from this loop, never by a
            # replay
            open_edge = getattr(processor, "open_edge", None)
            if open_edge is not None:
                self.edge = open_edge(home, runner)
            self.publisher.publish(runner.positions, runner.batch_no)
        except BaseException:
            self.close()
            raise

    def tick(self) -> bool:
        """One step: a batch folded (or none), views published when due, a state digest started when idle and caught up
        and signed once done, the status file rewritten. True when the step read nothing (idle). A failed batch (rolled
        back) is written to the status file and raised: the loop ends, and a restart resumes cleanly."""
        runner, publisher = self.runner, self.publisher
        try:
            n = runner.step()
            self.edge.tick(n == 0)
        except Exception as e:  # a failed batch rolled back; report, then restart cleanly
            runner.stats.last_error = f"{type(e).__name__}: {e}"
            write_status(self.home, self.name, {**runner.status(), **self.status_extra, "state": "failed",
                                                "last_error_at": time.time(),
                                                "traceback": traceback.format_exc(limit=5)}, self.shard)
            raise
        now = time.monotonic()
        idle = n == 0
        # views are published while catching up too (paced by publisher.due), and always before a digest:
        # a publish never waits for one; a digest computed at the published batch is signed afterwards by a
        # manifest-only publish (no file is written or re-read for it)
        if publisher.due(idle):
            publisher.publish(runner.positions, runner.batch_no, changed=runner.written)
        if idle and runner.caught_up() and now - self.last_digest >= DIGEST_EVERY_S and not self.digester.busy():
            publisher.publish(runner.positions, runner.batch_no, changed=runner.written)  # views first
            self.digester.start()  # on its own connection and thread: the loop keeps folding meanwhile
            self.last_digest = now
        done = self.digester.result()
        if done is not None and done[0] == runner.batch_no:
            # the digest is of the state still committed: sign it with these positions (a digest that a
            # newer batch overtook is dropped; the next idle moment takes another)
            emit_state_checkpoint(runner, self.name, done[1])
            publisher.publish(runner.positions, runner.batch_no, digest=done[1], changed=runner.written)
        if now - self.last_status >= STATUS_EVERY_S or idle:
            self.write_status("running")
            self.last_status = now
        return idle

    def finish(self, state: str = "stopped") -> None:
        """Stopping normally, after a finished batch: what the edge has under way recorded, the views published, the
        final state digest signed (a StateCheckpoint) and published, ``state`` in the status file."""
        runner, publisher = self.runner, self.publisher
        self.edge.drain()  # what the edge has under way is recorded before the last checkpoint
        self.digester.join()
        publisher.publish(runner.positions, runner.batch_no, changed=runner.written)
        final = self.store.digest()
        emit_state_checkpoint(runner, self.name, final)
        publisher.publish(runner.positions, runner.batch_no, digest=final, changed=runner.written)
        self.write_status(state)

    def write_status(self, state: str) -> None:
        write_status(self.home, self.name, {**self.runner.status(), **self.status_extra, "state": state,
                                            "last_error_at": self.last_error_at}, self.shard)

    def close(self) -> None:
        """Release the state file and what the runner holds (after ``finish``, or after a failure: then what the
        edge has under way is abandoned)."""
        self.edge.stop()
        self.digester.join()
        self.publisher.close()
        close_runner(self.runner)
        self.store.close()


class NoEdge:
    """The edge of a processor without effects: ``serve`` drives an edge after every step (a processor's
    ``open_edge(home, runner)`` makes its own, e.g. ``processors.deliveries.Sender``)."""

    def tick(self, idle: bool) -> None:
        """After a runner step (``idle``: it read nothing)."""

    def drain(self) -> None:
        """Stopping normally: finish and record what is under way."""

    def stop(self) -> None:
        """Stopping (after a failure too): abandon what is under way."""


class BackgroundDigest:
    """One state digest at a time, computed on the store's second connection in a thread (a digest of a
    large state takes seconds; the service's loop must keep folding and publishing meanwhile)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._thread: threading.Thread | None = None
        self._result: tuple[int, dict[str, Any]] | None = None
        self._error: BaseException | None = None

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        def run() -> None:
            try:
                self._result = self.store.snapshot_digest()
            except BaseException as e:  # noqa: BLE001  (re-raised in the loop's thread by result())
                self._error = e

        self._thread = threading.Thread(target=run, name="digest", daemon=True)
        self._thread.start()

    def result(self) -> tuple[int, dict[str, Any]] | None:
        """The finished digest as (batch number, digest), once; None while running or when none was started.
        A failure in the thread is raised here, in the loop, like any failure of the step it belongs to."""
        if self._thread is None or self._thread.is_alive():
            return None
        self._thread = None
        error, self._error = self._error, None
        if error is not None:
            raise error
        done, self._result = self._result, None
        return done

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()


def emit_state_checkpoint(runner: Runner, name: str, digest: dict[str, Any]) -> int:
    """Sign (input positions, state digest) as a StateCheckpoint on <prefix>.checkpoints, once per
    committed batch (deduplicated through the store, so a restart at the same positions sends none).
    Its event time is the newest log timestamp at the positions: from the log, so replays agree.

    Signed by ``processor.<name>.checkpoints``, on a chain of its own (``Runner.emit_state``), never as a link of
    the chain of the processor's derived events: those are read on the processor's derived topic (settlements
    reads allocations) by readers that do not read this topic, and a link they cannot see was a ``sequence_gap``
    at the next derived record, then every later record of the processor refused. Its readers reading this
    topic too would not do: on Kafka the order between topics is by append time, which ties (same millisecond;
    a tie goes by topic name) or skews (each partition's leader stamps its own) between one producer's
    consecutive appends, so one chain across two topics cannot be checked in it; and a processor reading its own
    checkpoints would checkpoint again for ever. Links an older version signed this way are closed by
    ``processors.runtime.links``; ``replay`` compares StateCheckpoints of both signers."""
    if runner.checkpoint_key is None or runner.batch_no == 0:
        return 0
    if runner.store.meta(STATE_CHECKPOINT_META) == str(runner.batch_no):
        return 0
    t_ms = 0
    for (topic, part), off in runner.positions.items():
        if off > 0:
            recs = runner.log.read(topic, part, off - 1, 1)
            t_ms = max([t_ms] + [r.timestamp_ms for r in recs])
    t_us = min(max(t_ms * 1000, limits.MIN_EVENT_TIME_US), limits.MAX_EVENT_TIME_US)
    tables = json.dumps(digest["tables"], sort_keys=True)
    positions = tuple((f"{t}/{p}", o) for (t, p), o in sorted(runner.positions.items()))
    body = StateCheckpoint(processor=name, positions=positions,
                           digest=digest["digest"],
                           tables_json=tables if len(tables) <= limits.MAX_JSON_TEXT_CHARS else "")
    d = Derived(topic="checkpoints", body=body, event_time_us=t_us,
                idempotency_key=f"state:{name}:{runner.batch_no}:{digest['digest'].rpartition(':')[2][:16]}")
    return runner.emit_state([d], meta={STATE_CHECKPOINT_META: str(runner.batch_no)})


def live_digest(home: Home, name: str) -> dict[str, Any]:
    """The live processor's digest with the positions it reflects: from its file when it is not running,
    else from what it last published."""
    processor = get(name)()
    path = state_file(home, name)
    if not path.exists():
        return {"processor": name, "positions": {}, "digest": None, "source": "none"}
    try:
        store = Store(path, processor.views, read_only=True)
    except StoreError:  # the running processor holds the file: use the digest it last published
        state = read_state(home.views_dir(name))
        if not state or "digest" not in state:
            return {"processor": name, "positions": {}, "digest": None, "source": "running, no digest yet"}
        return {"processor": name, "positions": state["positions"], "digest": state["digest"]["digest"],
                "tables": state["digest"]["tables"], "source": "published"}
    try:
        d = store.digest()
        pos = {f"{t}/{p}": o for (t, p), o in sorted(store.positions().items())}
    finally:
        store.close()
    return {"processor": name, "positions": pos, "digest": d["digest"], "tables": d["tables"], "source": "state file"}


def replay(home: Home, name: str, log: Log, *, positions: dict[str, int] | None = None,
           target: Path | None = None, progress: Any = None) -> dict[str, Any]:
    """Rebuild the processor's state from offset 0 into a fresh file, up to ``positions``; its digest."""
    processor = get(name)()
    stop_at = parse_positions({"positions": positions}) if positions is not None else None
    tmp = None
    if target is None:
        tmp = tempfile.mkdtemp(prefix=f"replay-{name}-", dir=home.processor_dir(name))
        target = Path(tmp) / STATE_FILE
    store = Store(target, processor.views)
    try:
        runner = Runner(processor, log, store, anchors=home.anchors(), key=None, produce=False, stop_at=stop_at,
                        topic_prefix=home.config.get("topic_prefix", "ledger"))
        while True:
            n = runner.step()
            if progress is not None:
                progress(n)
            if n == 0 and (stop_at is not None or runner.caught_up()):
                break
        d = store.digest()
        pos = {f"{t}/{p}": o for (t, p), o in sorted(runner.positions.items())}
    finally:
        store.close()
    return {"processor": name, "positions": pos, "digest": d["digest"], "tables": d["tables"], "file": str(target)}


def shard_replay(home: Home, name: str, log: Log, shard: Shard, *, positions: dict[str, int] | None = None,
                 target: Path | None = None) -> dict[str, Any]:
    """``replay`` of one shard: its partitions (and control) from offset 0 into a fresh file, up to ``positions``,
    with the shard's hidden rows (``processors.runtime.shards``); its digest includes the sums to combine."""
    processor = get(name)()
    require_shardable(processor, shard)
    stop_at = parse_positions({"positions": positions}) if positions is not None else None
    if target is None:
        d = home.processor_dir(name, shard.label)
        d.mkdir(parents=True, exist_ok=True)
        target = Path(tempfile.mkdtemp(prefix=f"replay-{name}-", dir=d)) / STATE_FILE
    store = Store(target, processor.views, hidden=hidden_rows(processor, shard, home.control_topic))
    try:
        runner = Runner(processor, log, store, anchors=home.anchors(), key=None, produce=False, stop_at=stop_at,
                        topic_prefix=home.config.get("topic_prefix", "ledger"), shard=shard)
        while True:
            n = runner.step()
            if n == 0 and (stop_at is not None or runner.caught_up()):
                break
        digest = store.digest()
        pos = {f"{t}/{p}": o for (t, p), o in sorted(runner.positions.items())}
    finally:
        store.close()
    return {"processor": name, "shard": shard.label, "positions": pos, **digest, "file": str(target)}


def shard_live_digest(home: Home, name: str, shard: Shard) -> dict[str, Any]:
    """One shard's digest (with its sums) and positions: from its state file when it is not running, else from
    what it last published."""
    processor = get(name)()
    path = state_file(home, name, shard)
    if not path.exists():
        return {"processor": name, "shard": shard.label, "positions": {}, "digest": None, "source": "none"}
    try:
        store = Store(path, processor.views, read_only=True,
                      hidden=hidden_rows(processor, shard, home.control_topic))
    except StoreError:
        state = read_state(home.views_dir(name, shard.label))
        if not state or "sums" not in state.get("digest", {}):
            return {"processor": name, "shard": shard.label, "positions": {}, "digest": None,
                    "source": "running, no digest yet"}
        return {"processor": name, "shard": shard.label, "positions": state["positions"], **state["digest"],
                "source": "published"}
    try:
        d = store.digest()
        pos = {f"{t}/{p}": o for (t, p), o in sorted(store.positions().items())}
    finally:
        store.close()
    return {"processor": name, "shard": shard.label, "positions": pos, **d, "source": "state file"}


def combined_digest(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The digest of the union of the shards (``shards.combine`` over each part's ``sums``), their positions merged
    (data partitions are disjoint; control: the lowest of the shards', the point every shard has read past), and
    each shard's own; digest None unless every shard has one."""
    name = parts[0]["processor"] if parts else ""
    merged: dict[str, int] = {}
    for p in parts:
        for tp, off in p.get("positions", {}).items():
            merged[tp] = min(merged[tp], off) if tp in merged else off
    out: dict[str, Any] = {"processor": name, "shards": {p["shard"]: {"positions": p.get("positions", {}),
                                                                      "digest": p.get("digest"),
                                                                      "source": p.get("source", "")}
                                                         for p in parts},
                           "positions": dict(sorted(merged.items())), "digest": None, "tables": {}}
    if parts and all(p.get("digest") is not None and "sums" in p for p in parts):
        d = combine([{t: (int(v[0]), [int(x) for x in v[1:]]) for t, v in p["sums"].items()} for p in parts])
        out.update(digest=d["digest"], tables=d["tables"], sums=d["sums"])
    return out


def shard_count(home: Home, name: str) -> int | None:
    """How many shards processor ``name`` runs as in this home (from their state files), or None when it runs as
    one instance (or never ran). ``ValidationError`` when the state files do not make one layout."""
    d = home.processor_dir(name)
    counts: dict[int, set[int]] = {}
    if d.is_dir():
        for p in d.iterdir():
            m = SHARD_DIR_RE.fullmatch(p.name)
            if m and (p / STATE_FILE).exists():
                counts.setdefault(int(m.group(2)), set()).add(int(m.group(1)))
    if not counts:
        return None
    hint = f"move aside the state directories under {d} of the layout {name} no longer runs as"
    if len(counts) > 1 or (d / STATE_FILE).exists():
        raise ValidationError("processor", name, "has state files of more than one layout (one instance, or shards "
                              "of different counts)", layouts=sorted(counts), hint=hint)
    ((n, present),) = counts.items()
    if present != set(range(n)):
        raise ValidationError("processor", name, f"runs as {n} shards but not every shard has a state file",
                              missing=[f"shard-{i}-of-{n}" for i in range(n) if i not in present],
                              hint=f"run every instance: tokenledger run {name} --instances {n} --until-caught-up")
    return n

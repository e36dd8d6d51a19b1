"""``tokenledger run NAME --instances N --group``: the N shards of a processor shared out among processes by a Kafka
consumer group, and moved when a process joins, leaves or dies.

Slots: the processes join the group ``<prefix>.<name>.shards-of-N``, subscribed to the topic
``<prefix>.<name>.slots-of-N`` with N partitions (created on first start; ``ledger.log.kafka_group``). Partition I is
shard I of N (``processors.runtime.shards``: its partitions ``p % N == I``, its own state directory
``processors/<name>/shard-I-of-N/`` and signers). Each process runs, in one loop, the shards whose slots the group
assigned to it: it polls the consumer briefly (heartbeats, rebalances), then steps every shard it holds
(``service.Served``: a batch, views, state digest and checkpoint, status, as ``serve`` does for one).

Positions come from each shard's own state file (its tracking rows), never from the group: nothing is read from the
slots topic and no offset is ever committed, so a shard moved to another process resumes exactly where its last
holder committed its state, and loses or repeats nothing.

Rebalances, after the poll that made them: a slot revoked is released (its current batch is already finished: steps
never overlap a poll; its views and a final state checkpoint published, its status "released", its files closed); a
slot assigned is opened (``service.open_runner`` with ``Shard(I, N)``) once this process holds the slot's lock,
``<home>/state/locks/group-slot.<name>.shard-I-of-N.lock`` (an ``flock``). The group cannot say when the previous
holder has let go (that one hears of the rebalance at its own next poll): until the lock is free the slot waits and
is tried again each turn. The lock, and the state file's own, are what keep two processes from ever running one
shard. A process that dies (SIGKILL, a lost machine) drops both with its file handles, and the group gives its slots
to the others after the session timeout (``kafka_group.SESSION_TIMEOUT_MS``).

Where: several processes on one machine, or on machines that share the home directory (keys, state files, views) on
a file system whose locks hold across machines (NFSv4, not NFSv3 without a lock manager).

Signers: every shard's signers are registered before the process joins (under ``group-register.<name>.lock``, so
two processes starting together register each once): a control record appended while some shards run is one every
shard must fold, whichever process holds it.

N = 1: the one slot is the processor as it always runs (its state in the processor's own directory, as
``--instances 1`` runs it): a standby that takes over when the active process dies, for any processor.

``until_caught_up``: exit once the group gave this process at least one slot and every slot it holds is open and
caught up. Stopping (SIGTERM/SIGINT): every held shard finishes its batch and is closed cleanly (status "stopped"),
then the process leaves the group (the others rebalance at once). A failed batch ends the process (the shard's
status says "failed" and why, as a worker's does); nothing here restarts it: run it under a service manager.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ledger.errors import ValidationError
from ledger.log import Log
from ledger.log.kafka import KafkaLog
from ledger.log.kafka_group import SlotGroup
from ledger.sdk.home import Home
from processors import get
from processors.host import service
from processors.runtime.shards import Shard, check_instances, require_shardable

GROUP_ID = "{prefix}.{name}.shards-of-{count}"  # the consumer group of a processor's N shards
SLOTS_TOPIC = "{prefix}.{name}.slots-of-{count}"  # its coordination topic: N partitions, no records needed
SLOT_LOCK = "group-slot.{name}.{label}.lock"  # in the home's locks directory: held by the process running the slot
REGISTER_LOCK = "group-register.{name}.lock"  # held while a process registers the shards' signers
UNSHARDED_LABEL = "unsharded"  # a one-slot group's lock label (its processor runs in its own directory)
IDLE_POLL_MS = int(service.POLL_IDLE_S * 1000)  # the consumer's poll is the loop's pause when no shard read anything
BUSY_POLL_MS = 0  # ...and returns at once (heartbeats run on kafka-python's own thread) while shards have work


def group_id(prefix: str, name: str, count: int) -> str:
    return GROUP_ID.format(prefix=prefix, name=name, count=count)


def slots_topic(prefix: str, name: str, count: int) -> str:
    return SLOTS_TOPIC.format(prefix=prefix, name=name, count=count)


def slot_shard(slot: int, count: int) -> Shard | None:
    """The shard slot ``slot`` of ``count`` runs: shard I of N, or the unsharded processor when N is 1."""
    return None if count == 1 else Shard(slot, count)


def check_group_args(names: list[str], instances: int | None, shard: str | None, log_url: str) -> int:
    """The instance count for ``run --group``; ``ValidationError`` naming ``--group`` (and saying what to do) when
    it is used without ``--instances``, with ``--shard``, with other than one processor, or without a Kafka log."""
    if instances is None:
        raise ValidationError("--group", True, "needs --instances N: the number of shards the group shares out "
                              "among the processes that join it",
                              hint="e.g. tokenledger run journal --instances 3 --group (in every process)")
    if shard is not None:
        raise ValidationError("--group", True, f"the group assigns the shards; --shard {shard} cannot be given with it",
                              hint="give --instances N and --group, or --shard I/N without --group")
    if len(names) != 1:
        raise ValidationError("--group", True, f"runs one processor per process; {len(names) or 'no'} named",
                              names=names, hint="start one `tokenledger run NAME --instances N --group` per processor")
    if not log_url.startswith("kafka://"):
        kind = f"{log_url.partition('://')[0]}://" if "://" in log_url else "a SQLite file"
        raise ValidationError("--group", True, "needs a Kafka log: the group that shares out the shards is a Kafka "
                              f"consumer group, and this log is {kind}",
                              hint="run on a Kafka log (--log kafka://HOST:PORT, or a home made with `tokenledger "
                                   "init --log kafka://...`), or without --group: --instances N runs every shard "
                                   "here, --shard I/N one of them")
    return check_instances(instances)


def run_group(home: Home, name: str, count: int, log_url: str, *, until_caught_up: bool = False,
              on_event: Callable[[str], None] = lambda message: None) -> int:
    """Serve processor ``name``'s slots of ``count`` as a member of its consumer group until SIGTERM/SIGINT or, with
    ``until_caught_up``, until caught up (module docstring). 0 when it stopped cleanly; a failure is raised."""
    stopping = {"flag": False}

    def stop(signum: int, frame: object) -> None:
        stopping["flag"] = True

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    log = home.open_log(log_url)
    try:
        if not isinstance(log, KafkaLog):
            raise ValidationError("--group", True, f"needs a Kafka log, not {type(log).__name__}",
                                  hint="run on a Kafka log, or without --group")
        shards = [slot_shard(i, count) for i in range(check_instances(count))]
        for sh in shards:  # refused before anything is created, as `run` refuses before any worker starts
            if sh is not None:
                require_shardable(get(name), sh)
            service.check_layout(home, name, sh)
        register_signers(home, name, log, shards)
        prefix = home.config.get("topic_prefix", "ledger")
        gid = group_id(prefix, name, count)
        member = Member(home, name, count, log_url, group=gid, on_event=on_event)
        group = SlotGroup(log, gid, slots_topic(prefix, name, count), count)
        on_event(f"{name}: joining consumer group {gid} for {count} slot(s) (pid {os.getpid()})")
        clean = False
        try:
            busy = False
            while not stopping["flag"]:
                assigned = group.poll(BUSY_POLL_MS if busy else IDLE_POLL_MS)
                member.follow(assigned)
                busy = member.step()
                if until_caught_up and not busy and member.caught_up(assigned):
                    break
            member.release_all("stopped")
            clean = True
        finally:
            if not clean:
                member.abandon_all()  # a failure: each held shard's files closed, its committed state kept
            group.close()  # leave: the others take the slots at once
    finally:
        log.close()
        for s, h in old.items():
            signal.signal(s, h)
    return 0


def register_signers(home: Home, name: str, log: Log, shards: list[Shard | None]) -> None:
    """Every shard's signers registered (each once, though several processes start together) before any shard
    runs here: ``processors.host.supervisor`` does the same for ``--instances``, and says why."""
    with _held_lock(home.locks_dir / REGISTER_LOCK.format(name=name)):
        for sh in shards:
            service.ensure_processor_key(home, name, log, sh)


@dataclass
class _Held:
    """A slot this process runs: the shard served, its own log client, and the slot's lock (a file descriptor)."""

    served: service.Served
    log: Log
    lock_fd: int

    def close(self) -> None:
        try:
            self.served.close()
        finally:
            try:
                self.log.close()
            finally:
                os.close(self.lock_fd)  # releases the flock: the next holder may open the shard


class Member:
    """The shards one process runs for its group: which it holds, which wait for their previous holder."""

    def __init__(self, home: Home, name: str, count: int, log_url: str, *, group: str,
                 on_event: Callable[[str], None]) -> None:
        self.home, self.name, self.count, self.log_url = home, name, count, log_url
        self.group = group
        self.on_event = on_event
        self.held: dict[int, _Held] = {}
        self.waiting: set[int] = set()  # assigned, but another process still holds the slot's lock

    def label(self, slot: int) -> str:
        shard = slot_shard(slot, self.count)
        return UNSHARDED_LABEL if shard is None else shard.label

    def follow(self, assigned: frozenset[int]) -> None:
        """Release the slots the group took away, open the ones it gave (those whose lock is free)."""
        for slot in sorted(set(self.held) - assigned):
            self.on_event(f"{self.name}: releasing {self.label(slot)} (revoked by a rebalance)")
            self.release(slot, "released")
        self.waiting &= assigned
        for slot in sorted(assigned - set(self.held)):
            self.take(slot)

    def take(self, slot: int) -> None:
        shard = slot_shard(slot, self.count)
        fd = _try_lock(self.home.locks_dir / SLOT_LOCK.format(name=self.name, label=self.label(slot)))
        if fd is None:
            if slot not in self.waiting:
                self.on_event(f"{self.name}: {self.label(slot)} assigned here; waiting for its previous holder "
                              "to release it")
                self.waiting.add(slot)
            return
        try:
            log = self.home.open_log(self.log_url)  # a client of its own, as each worker of --instances has
            try:
                served = service.Served(self.home, self.name, log, shard=shard, status_extra={"group": self.group})
            except BaseException:
                log.close()
                raise
        except BaseException:
            os.close(fd)
            raise
        self.waiting.discard(slot)
        self.held[slot] = _Held(served, log, fd)
        self.on_event(f"{self.name}: running {self.label(slot)} here (pid {os.getpid()})")

    def step(self) -> bool:
        """One step of every held shard; True when any of them read something."""
        busy = False
        for slot in sorted(self.held):
            if not self.held[slot].served.tick():
                busy = True
        return busy

    def caught_up(self, assigned: frozenset[int]) -> bool:
        """The group gave this process at least one slot, and it runs each of them, caught up."""
        return bool(assigned) and set(self.held) == assigned and all(
            h.served.runner.caught_up() for h in self.held.values())

    def release(self, slot: int, state: str) -> None:
        """Close a slot's shard cleanly (views, final state checkpoint, ``state`` in its status), then its files."""
        held = self.held.pop(slot)
        try:
            held.served.finish(state)
        finally:
            held.close()

    def release_all(self, state: str) -> None:
        for slot in sorted(self.held):
            self.release(slot, state)

    def abandon_all(self) -> None:
        """Close every held shard's files without finishing (after a failure); each keeps its committed state."""
        for slot in sorted(self.held):
            with contextlib.suppress(Exception):  # closing the others must not hide the failure being raised
                self.held.pop(slot).close()


def _try_lock(path: Path) -> int | None:
    """An exclusive ``flock`` on ``path`` (its file descriptor, closed to release it), or None when held."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())  # who holds it, for whoever looks
    return fd


@contextlib.contextmanager
def _held_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` for the block, waiting for it if another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)

"""Numbered slots shared out among processes by a Kafka consumer group (``SlotGroup``).

The group is used for its membership and assignment only: it is subscribed to a coordination topic with one
partition per slot (partition I is slot I), created here, whose records are never needed. Its partitions are paused
as soon as they are assigned, records a fetch still returns are dropped, and no offset is ever committed
(``enable_auto_commit=False``, ``commit`` never called): whoever runs a slot keeps its own positions (a processor's
are in its state file), so nothing a committed offset could say is ever read.

What the cluster does for the members: each slot is assigned to one member of the group at a time; a member that
joins or leaves (``close`` sends LeaveGroup) makes the group rebalance at once; a member that dies without leaving is
dropped after ``session_timeout_ms`` without a heartbeat (kafka-python heartbeats from its own IO thread, so a long
step of the caller does not count), and its slots go to the others. A member that does not ``poll`` for
``max_poll_interval_ms`` leaves the group itself.

The assignment a member sees changes only inside ``poll`` (kafka-python runs the rebalance listener on its IO thread
while ``poll`` waits): ``poll`` returns the slots held when it returns. With kafka-python's default (eager)
assignors every rebalance revokes every slot before the new assignment; a caller that acts on the returned set after
each ``poll`` sees the net change. The group cannot say when the previous holder of a slot has stopped using it (it
hears of the rebalance only at its own next ``poll``): callers guard what a slot protects with a lock of their own.

Tansu (the test broker) holds a JoinGroup for about ``session_timeout_ms / 2``; ``describe_groups`` does not work
there and is not used.
"""

from __future__ import annotations

from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer

from ledger import limits
from ledger.errors import LogError
from ledger.log.kafka import KafkaLog, _construct

# 6 s: the smallest session Apache Kafka accepts by default (group.min.session.timeout.ms); a dead member's slots move
# after this, and a join on Tansu takes half of it
SESSION_TIMEOUT_MS = 6_000
HEARTBEAT_INTERVAL_MS = 1_000  # at most a third of the session, as Kafka advises: two heartbeats may be lost
FETCH_MAX_WAIT_MS = 20  # a fetch that slips through before a pause returns at once (no records are wanted)


class _Slots(ConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python has no type information
    """The slots assigned, as the rebalances leave them. Called on kafka-python's IO thread inside ``poll`` (where the
    consumer must not be used), so it only records: a revoked or lost slot leaves the set, an assigned one joins it
    (under the eager protocol ``assigned`` is the whole new assignment, under the cooperative one the added slots:
    the set is right under both)."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.assigned: frozenset[int] = frozenset()
        self.rebalances = 0

    def _mine(self, partitions: Any) -> set[int]:
        return {tp.partition for tp in partitions if tp.topic == self.topic}

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.assigned = self.assigned - self._mine(revoked)

    def on_partitions_lost(self, lost: Any) -> None:
        self.assigned = self.assigned - self._mine(lost)

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.assigned = self.assigned | self._mine(assigned)
        self.rebalances += 1


class SlotGroup:
    """This process's membership of consumer group ``group_id``, sharing out ``slots`` numbered slots (the partitions
    of ``topic``, created here with exactly that many) among the members. ``poll`` often; ``close`` to leave."""

    def __init__(self, log: KafkaLog, group_id: str, topic: str, slots: int, *,
                 session_timeout_ms: int = SESSION_TIMEOUT_MS, heartbeat_interval_ms: int = HEARTBEAT_INTERVAL_MS,
                 max_poll_interval_ms: int = limits.MAX_GROUP_POLL_INTERVAL_MS) -> None:
        self.group_id, self.topic, self.slots = group_id, topic, slots
        n = log.ensure_topic(topic, slots)
        if n != slots:
            raise LogError("the slots topic of a consumer group must have one partition per slot", topic=topic,
                           partitions=n, slots=slots,
                           hint="delete the topic (its records are never read) and start the group's members again")
        self._log = log
        self._listener = _Slots(topic)
        # the log's own connection settings (servers, TLS, SASL): the group's consumer reaches the same cluster as it
        with log.errors_as_ledger_errors("join consumer group", group=group_id, topic=topic):
            self._consumer: KafkaConsumer = _construct(
                KafkaConsumer, **log.client_settings(), group_id=group_id,
                enable_auto_commit=False,  # never commit: positions belong to whoever runs the slot
                auto_offset_reset="latest",  # where a fetch would start if one slipped through; nothing is read
                session_timeout_ms=session_timeout_ms, heartbeat_interval_ms=heartbeat_interval_ms,
                max_poll_interval_ms=max_poll_interval_ms, fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
                max_poll_records=1)
            self._consumer.subscribe([topic], listener=self._listener)
        self._closed = False

    @property
    def rebalances(self) -> int:
        """How many assignments this member has received."""
        return self._listener.rebalances

    def poll(self, timeout_ms: int) -> frozenset[int]:
        """Heartbeats, joins and rebalances for up to ``timeout_ms``; the slots this member holds afterwards."""
        if self._closed:
            raise LogError("the consumer group membership is closed", group=self.group_id)
        with self._log.errors_as_ledger_errors("consumer group poll", group=self.group_id, topic=self.topic):
            self._consumer.poll(timeout_ms=timeout_ms)  # records (none are wanted) are dropped
            assigned = self._consumer.assignment()
            if assigned:
                self._consumer.pause(*assigned)  # no fetches: the partitions carry no data for us
        return self._listener.assigned

    def close(self) -> None:
        """Leave the group (the others rebalance at once); idempotent. Nothing is committed."""
        if self._closed:
            return
        self._closed = True
        with self._log.errors_as_ledger_errors("leave consumer group", group=self.group_id):
            self._consumer.close(autocommit=False)

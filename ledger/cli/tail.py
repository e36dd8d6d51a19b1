"""``tokenledger tail``: decoded events from the log, as a table or JSON lines (records that do not
decode are shown as rejected)."""

from __future__ import annotations

import dataclasses
from typing import Any

import typer

from ledger.cli.output import HomeOpt, LogOpt, fmt_time, guarded, json_line, open_home, table
from ledger.errors import RejectError, ValidationError
from ledger.log import TOPICS, Log, Record
from ledger.sdk.home import resolve_log_url
from ledger.wire import codec
from ledger.wire.events import BY_KIND


def register(app: typer.Typer) -> None:
    """Add ``tail`` to ``app``."""
    app.command("tail", epilog=TAIL_EPILOG)(tail)


def _event_row(topic: str, rec_offset: int, partition: int, d: codec.DecodedEvent) -> dict[str, Any]:
    ev = d.event
    body = {f.name: getattr(ev.body, f.name) for f in dataclasses.fields(ev.body)}  # type: ignore[arg-type]
    return {"topic": topic, "partition": partition, "offset": rec_offset, "event_id": ev.event_id,
            "signer_id": ev.signer_id,
            "seq": ev.seq, "kind": ev.kind, "event_time": fmt_time(ev.event_time_us),
            "event_time_us": ev.event_time_us,
            "context": {k: v for k, v in (("org", ev.context.org), ("project", ev.context.project),
                                          ("task", ev.context.task), ("stage", ev.context.stage),
                                          ("run", ev.context.run)) if v is not None} | dict(ev.context.labels),
            "body": _plain(body)}


def _plain(v: Any) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, tuple) and all(isinstance(x, tuple) and len(x) == 2 for x in v):
        return {k: _plain(x) for k, x in v}
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    return v


def _summary(row: dict[str, Any]) -> str:
    b = row["body"]
    kind = row["kind"]
    if kind == "action":
        u = b.get("usage")
        s = str(b["operation"])
        return s + (f" {u['model']} in={u['input_tokens']} out={u['output_tokens']}" if u else "")
    if kind == "interaction":
        return (f"{b['requestor_id']}→{b['responder_id']} req={b['request_output']['tokens']} "
                f"resp={b['response_output']['tokens']}")
    if kind == "trust":
        return f"{b['subject_id']} {b['dimension']} {b['value_milli'] / 1000:+.3f}"
    if kind == "data":
        return f"read={b['bytes_read']} written={b['bytes_written']}"
    if kind == "compute":
        return f"{b['node_id']} cpu={b['cpu_time_slices']} gpu={b['gpu_time_slices']}"
    return ", ".join(f"{k}={v}" for k, v in b.items() if k in ("agent_id", "key_id", "model", "scope_id", "rule_id"))



TAIL_EPILOG = ("Example: tokenledger tail --limit 20   ·   tokenledger tail --follow --json   ·   "
               "tokenledger tail --topic rejected")


@guarded
def tail(home: str | None = HomeOpt, log: str | None = LogOpt,
         limit: int = typer.Option(20, help="Show the last N events of each topic partition (0 = all)."),
         from_offset: int | None = typer.Option(None, "--from", help="Start at this record offset instead."),
         follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events (Ctrl-C stops)."),
         kind: str | None = typer.Option(None, help="Only this event kind."),
         topic: list[str] | None = typer.Option(
             None, "--topic", help="Logical topic(s): events, control, rejected, checkpoints, ... "
                                   "(default: control and events)."),
         json_: bool = typer.Option(False, "--json", help="One JSON object per line.")) -> None:
    """Print decoded events from the log (records that do not decode are shown as rejected)."""
    _check_options(limit, from_offset, kind, topic)
    h = open_home(home)
    lg = h.open_log(resolve_log_url(log, h))
    topics = [h.topic_for(t) for t in topic] if topic else h.ledger_topics
    try:
        rows: list[dict[str, Any]] = []
        positions = _start_positions(lg, topics, limit, from_offset)
        while True:
            n, batch_rows = _drain(lg, positions, kind, 0.0)
            rows.extend(batch_rows)
            if n == 0:
                break
        rows.sort(key=lambda r: (r.get("event_time_us", 0), r["topic"], r["partition"], r["offset"]))
        if limit:
            rows = rows[-limit:]
        _show_rows(rows, json_)
        while follow:
            _, new = _drain(lg, positions, kind, 0.5)
            if new:
                _show_rows(new, json_, header=False)
    except KeyboardInterrupt:
        return
    finally:
        lg.close()


# events, control, rejected, ...: the topics of signed batches (events.flat holds unsigned Avro records for Kafka
# tools, README "The flat event topic"; tail would show each as a rejected batch)
LOGICAL_TOPICS = tuple(t.split(".", 1)[1] for t in TOPICS if t != "ledger.events.flat")


def _check_options(limit: int, from_offset: int | None, kind: str | None, topic: list[str] | None) -> None:
    """Refuse what would silently print nothing: a negative count or offset, an event kind no reader
    knows, a topic that is not one of the ledger's (reading it would even create it on the log)."""
    if limit < 0:
        raise ValidationError("limit", limit, "must not be negative (0 = all)")
    if from_offset is not None and from_offset < 0:
        raise ValidationError("from", from_offset, "must not be negative")
    if kind is not None and kind not in BY_KIND:
        raise ValidationError("kind", kind, f"must be one of {', '.join(sorted(BY_KIND))}")
    for t in topic or ():
        if t not in LOGICAL_TOPICS:
            raise ValidationError("topic", t, f"must be one of {', '.join(LOGICAL_TOPICS)}")


def _start_positions(lg: Log, topics: list[str], limit: int, from_offset: int | None) -> dict[tuple[str, int], int]:
    """Where each topic partition is read from: ``from_offset``, else the last ``limit`` records (0 = all)."""
    positions: dict[tuple[str, int], int] = {}
    for t in topics:
        lg.ensure_topic(t)
        for p in range(lg.partitions(t)):
            end = lg.end_offset(t, p)
            start = from_offset if from_offset is not None else (0 if limit == 0 else max(0, end - limit))
            positions[(t, p)] = start
    return positions


def _drain(lg: Log, positions: dict[tuple[str, int], int], kind: str | None,
           timeout: float) -> tuple[int, list[dict[str, Any]]]:
    """One read of every partition from its position (advanced past what was read): the number of records
    read and the rows of those of ``kind`` (all kinds if None), rejected records included."""
    got: list[dict[str, Any]] = []
    n = 0
    for (t, p) in list(positions):
        recs = lg.read(t, p, positions[(t, p)], 1000, timeout_s=timeout)
        n += len(recs)
        for rec in recs:
            positions[(t, p)] = rec.offset + 1
            got.extend(_record_rows(t, p, rec, kind))
    return n, got


def _record_rows(t: str, p: int, rec: Record, kind: str | None) -> list[dict[str, Any]]:
    """The rows of one record's events of ``kind``, or one rejected row if the record does not decode."""
    got: list[dict[str, Any]] = []
    try:
        batch = codec.decode_batch(rec.value)
        for raw in batch.events:
            row = _event_row(t, rec.offset, p, codec.decode_event(raw))
            if kind is None or row["kind"] == kind:
                got.append(row)
    except RejectError as e:
        got.append({"topic": t, "partition": p, "offset": rec.offset, "rejected": e.code.value,
                    "reason": e.reason})
    return got


def _show_rows(rows: list[dict[str, Any]], json_: bool, header: bool = True) -> None:
    if json_:
        for r in rows:
            json_line(r)
        return
    table_rows = []
    for r in rows:
        where = f"{r['topic'].rsplit('.', 1)[-1]}/{r['partition']}@{r['offset']}"
        if "rejected" in r:
            table_rows.append([where, "", "", "REJECTED", r["rejected"], r["reason"]])
        else:
            table_rows.append([where, r["event_time"], f"{r['signer_id']}#{r['seq']}", r["kind"],
                               r["event_id"][:12], _summary(r)])
    table(None if not header else "events", ["where", "event time", "signer#seq", "kind", "event id", "what"],
           table_rows)

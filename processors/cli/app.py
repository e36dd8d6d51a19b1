"""The processor half of the ``tokenledger`` command: run, status, replay, digest, query, demo.

Added to the ledger's app by ``register(app)`` (``processors.cli.build_app`` composes them) so there
is one command; imports go one way (processors → ledger). The commands parse, call a use case
(processors/services/, processors/views.py) and print.
"""

from __future__ import annotations

import csv
import io
import os

import typer

from ledger.cli.output import HomeOpt, JsonOpt, LogOpt, err, guarded, open_home, out, print_json, progress, table
from ledger.errors import ExitCode, LedgerError, ValidationError
from ledger.sdk.home import Home, resolve_home, resolve_log_url
from processors import REGISTRY, get, views

commands = typer.Typer()  # run, status, digest, replay, query, demo


def register(app: typer.Typer) -> None:
    """Add run, status, digest, replay, query, demo to ``app``."""
    app.add_typer(commands)


NamesArg = typer.Argument(None, help="Processors to run (default: all).")


def _names(names: list[str] | None) -> list[str]:
    if not names:
        return sorted(REGISTRY)
    for n in names:
        get(n)
    return names


@commands.command(epilog="Example: tokenledger run            ·  tokenledger run journal --until-caught-up")
@guarded
def run(names: list[str] | None = NamesArg, home: str | None = HomeOpt, log: str | None = LogOpt,
        until_caught_up: bool = typer.Option(False, help="Exit once every processor has read the whole log."),
        schema_registry: str | None = typer.Option(None, "--schema-registry", metavar="URL",
                                                   help="Schema Registry for the flat event topic (default: the "
                                                        "home's schema_registry; none: Avro single-object)"),
        instances: int | None = typer.Option(None, "--instances", metavar="N",
                                             help="Run each named processor as N instances here, each owning the "
                                                  "partitions p with p % N = I (shardable processors only)"),
        shard: str | None = typer.Option(None, "--shard", metavar="I/N",
                                         help="Run only instance I of N of each named processor (one machine's "
                                              "share; shardable processors only)"),
        group: bool = typer.Option(False, "--group",
                                   help="With --instances N on a Kafka log: run, in this process, the shards a Kafka "
                                        "consumer group assigns it; other processes with --group share the rest "
                                        "and take over a dead one's")) -> None:
    """Start each processor as its own process (own DuckDB file) and supervise them; Ctrl-C stops them cleanly."""
    from ledger.sdk import schema_registry as registry  # imported when used, as the supervisor
    from processors.host.supervisor import supervise  # imported when used: `query` must start fast
    from processors.runtime import shards as sharding
    h = open_home(home)
    if schema_registry is not None:  # the workers inherit it (ledger.sdk.schema_registry.configured_url reads it)
        os.environ[registry.ENV_VAR] = registry.check_url(schema_registry, "schema-registry")
    chosen = _names(names)
    if group:  # one processor's shards, shared out by a Kafka consumer group, run in this process
        _run_group(h, names or [], instances, shard, log, until_caught_up)
        return
    layout: dict[str, list[sharding.Shard]] = {}
    if instances is not None or shard is not None:
        if instances is not None and shard is not None:
            raise ValidationError("--shard", shard, "give --instances N (all instances here) or --shard I/N (one), "
                                  "not both")
        if not names:
            raise ValidationError("names", None, "--instances/--shard need the processors to shard named",
                                  hint="e.g. tokenledger run journal --instances 3")
        wanted = (sharding.all_shards(instances) if instances is not None
                  else [sharding.parse_shard(shard or "")])
        if wanted != [sharding.Shard(0, 1)]:  # one instance of one is the processor as it always ran
            for n in chosen:
                for sh in wanted:
                    sharding.require_shardable(get(n), sh)
                layout[n] = wanted
    from processors.host.service import check_layout
    for n in chosen:  # a layout beside another is refused here, before any worker starts (each would refuse too)
        for one in [*layout[n]] if n in layout else [None]:
            check_layout(h, n, one)
    err.print(f"running {', '.join(chosen)} on {resolve_log_url(log, h)} (Ctrl-C to stop)", markup=False)
    codes = supervise(chosen, h.path, log, until_caught_up=until_caught_up,
                      on_event=lambda m: err.print(m, markup=False), shards=layout)
    bad = {n: c for n, c in codes.items() if c not in (0, -15)}
    if bad:
        raise LedgerError("processors exited with errors", exit_codes=bad,
                          hint="see `tokenledger status` for their last error")


def _run_group(h: Home, names: list[str], instances: int | None, shard: str | None, log: str | None,
               until_caught_up: bool) -> None:
    """``run --group``: refused unless one processor, --instances N and a Kafka log (``processors.host.group``)."""
    from processors.host import group as grouping  # imported when used, as the supervisor
    url = resolve_log_url(log, h)
    count = grouping.check_group_args(names, instances, shard, url)
    err.print(f"running {names[0]}'s shards given to this process by its consumer group on {url} (Ctrl-C to stop)",
              markup=False)
    grouping.run_group(h, names[0], count, url, until_caught_up=until_caught_up,
                       on_event=lambda m: err.print(m, markup=False))


@commands.command(epilog="Example: tokenledger status --json")
@guarded
def status(home: str | None = HomeOpt, json_: bool = JsonOpt) -> None:
    """Per processor: state, position, lag, events/s and last error."""
    from processors.services import replay as replay_service  # imported when used: `query` must start fast
    rows = replay_service.status(open_home(home))
    if json_:
        print_json([r.to_dict() for r in rows])
        return
    table("processors", ["processor", "state", "position", "lag", "events/s", "events", "rejected", "last error",
                          "updated"],
           [[r.processor, r.state, ", ".join(f"{k}@{v}" for k, v in (r.positions or {}).items()), r.lag,
             r.events_per_s, r.events, r.rejected, r.last_error or "",
             "" if r.updated_s_ago is None else f"{r.updated_s_ago}s ago"] for r in rows])


@commands.command(epilog="Example: tokenledger digest journal")
@guarded
def digest(name: str, home: str | None = HomeOpt, json_: bool = JsonOpt) -> None:
    """The processor's state digest (a hash over the canonical contents of its views) and its positions."""
    from processors.services import replay as replay_service  # imported when used: `query` must start fast
    get(name)
    d = replay_service.digest(open_home(home), name)
    if json_:
        print_json(d.to_dict())
        return
    table(f"digest of {name} ({d.source})", ["field", "value"],
           [["digest", d.digest], ["positions", d.positions],
            *([f"rows in {t}", v["rows"]] for t, v in (d.tables or {}).items())])


@commands.command(epilog="Example: tokenledger replay journal     (exit 1 if the rebuilt state differs)")
@guarded
def replay(name: str, home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt,
           keep: bool = typer.Option(False, help="Keep the rebuilt DuckDB file.")) -> None:
    """Rebuild NAME's state from offset 0 into a fresh file, up to the live positions, and compare digests."""
    from processors.services import replay as replay_service  # imported when used: `query` must start fast
    get(name)
    h = open_home(home)
    live = replay_service.replayable(h, name)
    lg = h.open_log(resolve_log_url(log, h))
    try:
        with progress(live.records, "replaying", not json_) as prog:
            task = prog.add_task("replay", total=live.records)
            result = replay_service.replay(h, name, lg, live, keep=keep, progress=lambda n: prog.advance(task, n))
    finally:
        lg.close()
    if json_:
        print_json(result.to_dict())
    else:
        table(f"replay of {name}", ["", "digest", "positions"],
               [["live", live.digest, live.positions], ["replay", result.rebuilt.digest, result.rebuilt.positions]])
        out.print({None: "no signed state checkpoint at these positions.", True: "the signed state checkpoint "
                   "agrees.", False: "the SIGNED STATE CHECKPOINT DIFFERS."}[result.state_checkpoint.match],
                  markup=False)
        if result.state_checkpoint.other_algorithm:
            out.print(f"{len(result.state_checkpoint.other_algorithm)} signed state checkpoint(s) at these positions "
                      "hold a digest of another algorithm (signed before an upgrade): not compared.", markup=False)
        out.print("EQUAL: the rebuilt state matches the live one." if result.equal
                  else "DIFFERENT: the states diverge.", markup=False)
    if not result.equal:
        raise typer.Exit(ExitCode.REJECTED)


@commands.command(epilog='Example: tokenledger query "SELECT kind, count(*) FROM events GROUP BY kind" --csv')
@guarded
def query(sql: str, home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt,
          csv_: bool = typer.Option(False, "--csv", help="Print CSV.")) -> None:
    """Run SQL over the published views (never blocks the processors). `tokenledger query "SHOW TABLES"` lists them.

    Each processor's views are checked against its signed manifest first (exit 1 if forged), and the SQL
    runs read-only: no other files, no COPY, no ATTACH, no writes, no settings."""
    h = open_home(home)
    views.write_views_sql(h)  # for plain DuckDB: duckdb -init <home>/views/views.sql (unchecked)
    result = views.query(h, sql, log_url=log)
    if json_:
        print_json(result.records())
    elif csv_:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(result.columns)
        w.writerows(result.rows)
        out.print(buf.getvalue().rstrip("\n"), markup=False)
    else:
        table(None, list(result.columns), [list(r) for r in result.rows])


@commands.command(epilog="Example: tokenledger demo            ·  tokenledger demo --tasks 50 --home /tmp/demo-home")
@guarded
def demo(home: str | None = HomeOpt, log: str | None = LogOpt,
         tasks: int = typer.Option(200, min=1, max=100_000, help="Tasks the planner fans out (~25 events each)."),
         seed: int = typer.Option(7, help="Workload seed."), json_: bool = JsonOpt) -> None:
    """Run the whole system on a multi-agent workload: planner → researcher / writer / critic with LLM calls,
    interactions, data, compute and trust events — signed, chained, appended, verified — then start the
    processors, wait until they have caught up, and show a few views."""
    from processors.services import demo as demo_service  # imported when used: `query` must start fast
    h, created = demo_service.open_or_create(resolve_home(home), log)
    if created and not json_:
        err.print(f"created ledger home {h.path}", markup=False)
    say = (lambda m: None) if json_ else (lambda m: err.print(m, markup=False))
    approx = tasks * demo_service.EVENTS_PER_TASK
    with progress(approx, "emitting", not json_) as prog:
        task = prog.add_task("emit", total=approx)
        r = demo_service.run_demo(h, log_url=log, tasks=tasks, seed=seed, progress=lambda n: prog.advance(task, n),
                                  on_event=say)
    if json_:
        print_json(r.to_dict())
        return
    table(f"demo {r.run}: {r.events:,} events from {r.tasks} tasks emitted in {r.emit_seconds:.2f}s "
           f"({r.events_per_s:,} events/s, {r.records:,} signed records)",
           ["agent", "events", "LLM input tok", "LLM output tok", "interactions sent", "bytes read"],
           [[a, v["events"], v["llm_input_tokens"], v["llm_output_tokens"], v["interactions"], v["bytes_read"]]
            for a, v in r.per_agent.items()])
    ver = r.verify
    out.print(f"verify: {'OK' if ver['ok'] else 'FAILED ' + str(ver['rejected'])} — {ver['accepted_events']:,} events "
              f"in {ver['accepted_records']:,} records from {ver['signers']} signers", markup=False)
    out.print(f"processors caught up in {r.processing_seconds:.2f}s: {', '.join(r.processors)}", markup=False)
    for title, view in r.views.items():
        table(title, list(view.columns), [list(row) for row in view.rows])
    out.print(f"log: {r.log}", markup=False)
    out.print(f'next: tokenledger query "SELECT * FROM events LIMIT 5" --home {r.home}   ·   '  # noqa: S608 (a hint)
              f"tokenledger replay journal --home {r.home}   ·   tokenledger verify --home {r.home}", markup=False)
    out.print(f"report: {r.report}", markup=False)


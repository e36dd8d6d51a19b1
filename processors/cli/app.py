"""The processor half of the ``tokenledger`` command: run, status, replay, digest, query, demo.

Added to the ledger's app by ``register(app)`` (``processors.cli.build_app`` composes them) so there
is one command; imports go one way (processors → ledger).
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

import typer

from ledger.cli.output import (
    HomeOpt,
    JsonOpt,
    LogOpt,
    err,
    exit,
    guarded,
    open_home,
    out,
    print_json,
    progress,
    table,
)
from ledger.errors import ExitCode, LedgerError, ValidationError
from ledger.sdk.emitter import Emitter
from ledger.sdk.home import OPERATOR_ID, Home, resolve_home, resolve_log_url
from ledger.wire.events import AgentRegistered
from processors import REGISTRY, get
from processors.runtime.service import live_digest, processor_dir
from processors.runtime.service import replay as replay_state
from processors.runtime.supervisor import pid_alive, supervise
from processors.views import views_sql

NamesArg = typer.Argument(None, help="Processors to run (default: all).")

commands = typer.Typer()  # run, status, digest, replay, query, demo


def register(app: typer.Typer) -> None:
    """Add ``run``, ``status``, ``digest``, ``replay``, ``query`` and ``demo`` to ``app``."""
    app.add_typer(commands)


def _names(names: list[str] | None) -> list[str]:
    if not names:
        return sorted(REGISTRY)
    for n in names:
        get(n)
    return names


@commands.command(epilog="Example: tokenledger run            ·  tokenledger run journal --until-caught-up")
@guarded
def run(names: list[str] | None = NamesArg, home: str | None = HomeOpt, log: str | None = LogOpt,
        until_caught_up: bool = typer.Option(False, help="Exit once every processor has read the whole log.")) -> None:
    """Start each processor as its own process (own DuckDB file) and supervise them; Ctrl-C stops them cleanly."""
    h = open_home(home)
    chosen = _names(names)
    err.print(f"running {', '.join(chosen)} on {resolve_log_url(log, h)} (Ctrl-C to stop)", markup=False)
    codes = supervise(chosen, h.path, log, until_caught_up=until_caught_up,
                      on_event=lambda m: err.print(m, markup=False))
    bad = {n: c for n, c in codes.items() if c not in (0, -15)}
    if bad:
        raise LedgerError("processors exited with errors", exit_codes=bad,
                          hint="see `tokenledger status` for their last error")


def _status_rows(h: Home) -> list[dict[str, Any]]:
    rows = []
    for name in sorted(REGISTRY):
        path = processor_dir(h, name) / "status.json"
        try:
            s = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            rows.append({"processor": name, "state": "never run"})
            continue
        running = s.get("state") == "running" and pid_alive(int(s.get("pid", 0)))
        state = s.get("state", "?") if running or s.get("state") != "running" else "dead"
        rows.append({"processor": name, "state": state, "pid": s.get("pid"), "positions": s.get("positions"),
                     "lag": s.get("lag"), "events_per_s": s.get("events_per_s"), "events": s.get("events"),
                     "rejected": s.get("rejected"), "last_error": s.get("last_error"),
                     "updated_s_ago": round(time.time() - s.get("updated_at", 0), 1)})
    return rows


@commands.command(epilog="Example: tokenledger status --json")
@guarded
def status(home: str | None = HomeOpt, json_: bool = JsonOpt) -> None:
    """Per processor: state, position, lag, events/s and last error."""
    rows = _status_rows(open_home(home))
    if json_:
        print_json(rows)
        return
    table("processors", ["processor", "state", "position", "lag", "events/s", "events", "rejected", "last error",
                          "updated"],
           [[r["processor"], r["state"], ", ".join(f"{k}@{v}" for k, v in (r.get("positions") or {}).items()),
             r.get("lag"), r.get("events_per_s"), r.get("events"), r.get("rejected"), r.get("last_error") or "",
             f"{r['updated_s_ago']}s ago" if "updated_s_ago" in r else ""] for r in rows])


@commands.command(epilog="Example: tokenledger digest journal")
@guarded
def digest(name: str, home: str | None = HomeOpt, json_: bool = JsonOpt) -> None:
    """The processor's state digest (a hash over the canonical contents of its views) and its positions."""
    get(name)
    d = live_digest(open_home(home), name)
    if json_:
        print_json(d)
        return
    table(f"digest of {name} ({d['source']})", ["field", "value"],
           [["digest", d["digest"]], ["positions", d["positions"]]] +
           [[f"rows in {t}", v["rows"]] for t, v in (d.get("tables") or {}).items()])


@commands.command(epilog="Example: tokenledger replay journal     (exit 1 if the rebuilt state differs)")
@guarded
def replay(name: str, home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt,
           keep: bool = typer.Option(False, help="Keep the rebuilt DuckDB file.")) -> None:
    """Rebuild NAME's state from offset 0 into a fresh file, up to the live positions, and compare digests."""
    get(name)
    h = open_home(home)
    live = live_digest(h, name)
    if live["digest"] is None:
        raise ValidationError("processor", name, f"has no state to compare with ({live['source']})",
                              hint=f"run it first: tokenledger run {name} --until-caught-up")
    lg = h.open_log(resolve_log_url(log, h))
    try:
        total = sum(live["positions"].values())
        with progress(total, "replaying", not json_) as prog:
            task = prog.add_task("replay", total=total)
            rebuilt = replay_state(h, name, lg, positions=live["positions"], progress=lambda n: prog.advance(task, n))
        from processors.cli.proofs import check_state_checkpoints

        signed = check_state_checkpoints(h, lg, name, rebuilt)  # the processor's signed StateCheckpoints
    finally:
        lg.close()
    if not keep:
        import shutil

        shutil.rmtree(Path(rebuilt["file"]).parent, ignore_errors=True)
    equal = rebuilt["digest"] == live["digest"] and signed["match"] is not False
    result = {"processor": name, "equal": equal, "live": live, "replay": rebuilt, "state_checkpoint": signed}
    if json_:
        print_json(result)
    else:
        table(f"replay of {name}", ["", "digest", "positions"],
               [["live", live["digest"], live["positions"]], ["replay", rebuilt["digest"], rebuilt["positions"]]])
        out.print({None: "no signed state checkpoint at these positions.", True: "the signed state checkpoint "
                   "agrees.", False: "the SIGNED STATE CHECKPOINT DIFFERS."}[signed["match"]], markup=False)
        out.print("EQUAL: the rebuilt state matches the live one." if equal else "DIFFERENT: the states diverge.",
                  markup=False)
    if not equal:
        exit(ExitCode.REJECTED)


@commands.command(epilog='Example: tokenledger query "SELECT kind, count(*) FROM events GROUP BY kind" --csv')
@guarded
def query(sql: str, home: str | None = HomeOpt, json_: bool = JsonOpt,
          csv_: bool = typer.Option(False, "--csv", help="Print CSV.")) -> None:
    """Run SQL over the published views (never blocks the processors). `tokenledger query "SHOW TABLES"` lists them."""
    import duckdb

    h = open_home(home)
    text = views_sql(h)
    (h.path / "views").mkdir(exist_ok=True)
    (h.path / "views" / "views.sql").write_text(text)
    con = duckdb.connect()
    try:
        for stmt in text.strip().splitlines():
            con.execute(stmt)
        try:
            cur = con.execute(sql)
        except duckdb.Error as e:
            raise ValidationError("sql", sql, str(e).splitlines()[0],
                                  hint='list the views with: tokenledger query "SHOW TABLES"') from None
        cols = [d[0] for d in cur.description] if cur.description else []
        rows = cur.fetchall() if cols else []
    finally:
        con.close()
    if json_:
        print_json([dict(zip(cols, r)) for r in rows])
    elif csv_:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(cols)
        w.writerows(rows)
        out.print(buf.getvalue().rstrip("\n"), markup=False)
    else:
        table(None, cols, [list(r) for r in rows])


_USD = "CAST(CAST({} AS DECIMAL(20, 0)) / 1000000 AS DECIMAL(20, 6))"  # micro-USD shown as dollars, exactly

DEMO_VIEWS = (
    ("events by kind", "SELECT kind, count(*) AS events FROM events GROUP BY kind ORDER BY events DESC"),
    ("cost per agent: incurred vs allocated by Shapley (USD)",
     f"SELECT agent_id AS agent, interactions, {_USD.format('incurred_micros')} AS incurred, "
     f"{_USD.format('allocated_micros')} AS allocated, {_USD.format('balance_micros')} AS balance "
     "FROM agent_costs WHERE method = 'shapley' ORDER BY allocated DESC"),
    ("budgets (this hour)",
     "SELECT scope, scope_id, budget_kind, allocation, consumed, round(utilisation, 3) AS utilisation, status "
     "FROM budgets QUALIFY row_number() OVER (PARTITION BY scope, scope_id, budget_kind "
     "ORDER BY window_start_us DESC) = 1 ORDER BY scope, scope_id, budget_kind"),
    ("reputation", "SELECT agent_id AS agent, round(overall, 3) AS overall, tier, multiplier, events_counted "
                   "FROM reputation ORDER BY overall DESC"),
    ("settlements and checkpoints",
     f"SELECT 'settlements' AS what, count(*) AS n, {_USD.format('coalesce(sum(amount_micros), 0)')} AS usd "
     "FROM settlements UNION ALL SELECT 'signed Merkle checkpoints', count(*), NULL FROM checkpoints"),
    ("LLM tokens by agent and model",
     "SELECT signer_id AS agent, model, count(*) AS calls, sum(input_tokens) AS input_tokens, "
     "sum(cache_read_tokens) AS cached, sum(output_tokens) AS output_tokens FROM events "
     "WHERE kind = 'action' AND model IS NOT NULL GROUP BY ALL ORDER BY input_tokens DESC"),
    ("agent-to-agent calls (the four flows)",
     "SELECT requestor_id, responder_id, count(*) AS calls, sum(request_output_tokens) AS req_out, "
     "sum(request_input_tokens) AS req_in, sum(response_output_tokens) AS resp_out, "
     "sum(response_input_tokens) AS resp_in FROM events WHERE kind = 'interaction' GROUP BY ALL ORDER BY calls DESC"),
)


@commands.command(epilog="Example: tokenledger demo            ·  tokenledger demo --tasks 50 --home /tmp/demo-home")
@guarded
def demo(home: str | None = HomeOpt, log: str | None = LogOpt,
         tasks: int = typer.Option(200, min=1, max=100_000, help="Tasks the planner fans out (~25 events each)."),
         seed: int = typer.Option(7, help="Workload seed."), json_: bool = JsonOpt) -> None:
    """Run the whole system on a multi-agent workload: planner → researcher / writer / critic with LLM calls,
    interactions, data, compute and trust events — signed, chained, appended, verified — then start the
    processors, wait until they have caught up, and show a few views."""
    from ledger.testing.workload import run_demo

    path = resolve_home(home)
    if not (path / "config.json").exists():
        Home.init(path, log_url=log)
        h = Home.open(path)
        lg = h.open_log()
        op = h.operator_key()
        try:
            with Emitter.for_operator(h, lg) as em:
                em.emit(AgentRegistered(agent_id=OPERATOR_ID, key_id=op.key_id, public_key=op.public.raw,
                                        role="operator"))
                from ledger.economics.price_events import default_price_events, price_event_time_us

                for body in default_price_events():  # the allocations processor prices from the log only
                    em.emit(body, event_time_us=price_event_time_us(body))
        finally:
            lg.close()
        if not json_:
            err.print(f"created ledger home {path}", markup=False)
    h = Home.open(path)
    approx = tasks * 25
    with progress(approx, "emitting", not json_) as prog:
        task = prog.add_task("emit", total=approx)
        s = run_demo(h, tasks=tasks, seed=seed, log_url=resolve_log_url(log, h),
                     progress=lambda n: prog.advance(task, n))
    t0 = time.perf_counter()
    # upstream processors (reading control/events) first, then those that read their derived topics
    upstream = sorted(n for n, c in REGISTRY.items() if set(c.topics) <= {"control", "events"})
    downstream = sorted(set(REGISTRY) - set(upstream))
    say = (lambda m: None) if json_ else (lambda m: err.print(m, markup=False))
    codes = supervise(upstream, h.path, log, until_caught_up=True, on_event=say)
    if not any(codes.values()) and downstream:
        codes.update(supervise(downstream, h.path, log, until_caught_up=True, on_event=say))
    processing_s = time.perf_counter() - t0
    if any(codes.values()):
        raise LedgerError("a processor failed during the demo", exit_codes=codes,
                          hint=f"see `tokenledger status --home {h.path}`")
    results = {}
    import duckdb

    con = duckdb.connect()
    try:
        for stmt in views_sql(h).strip().splitlines():
            con.execute(stmt)
        for title, sql in DEMO_VIEWS:
            cur = con.execute(sql)
            results[title] = ([d[0] for d in cur.description], cur.fetchall())
    finally:
        con.close()
    summary = {"home": s.home, "log": s.log, "run": s.run, "tasks": s.tasks, "events": s.events, "records": s.records,
               "emit_seconds": round(s.seconds, 3), "processing_seconds": round(processing_s, 3),
               "per_agent": s.per_agent, "verify": s.verify,
               "views": {t: [dict(zip(c, r)) for r in rows] for t, (c, rows) in results.items()}}
    from processors.cli.report import write_html
    from processors.report.model import build

    summary["report"] = str(write_html(build(h), h.path / "report.html"))
    if json_:
        print_json(summary)
        return
    eps = round(s.events / s.seconds) if s.seconds else 0
    table(f"demo {s.run}: {s.events:,} events from {s.tasks} tasks emitted in {s.seconds:.2f}s "
           f"({eps:,} events/s, {s.records:,} signed records)",
           ["agent", "events", "LLM input tok", "LLM output tok", "interactions sent", "bytes read"],
           [[a, v["events"], v["llm_input_tokens"], v["llm_output_tokens"], v["interactions"], v["bytes_read"]]
            for a, v in s.per_agent.items()])
    ver = s.verify
    out.print(f"verify: {'OK' if ver['ok'] else 'FAILED ' + str(ver['rejected'])} — {ver['accepted_events']:,} events "
              f"in {ver['accepted_records']:,} records from {ver['signers']} signers", markup=False)
    out.print(f"processors caught up in {processing_s:.2f}s: {', '.join(sorted(REGISTRY))}", markup=False)
    for title, (cols, rows) in results.items():
        table(title, cols, [list(r) for r in rows])
    out.print(f"log: {s.log}", markup=False)
    out.print(f'next: tokenledger query "SELECT * FROM events LIMIT 5" --home {s.home}   ·   '
              f"tokenledger replay journal --home {s.home}   ·   tokenledger verify --home {s.home}", markup=False)
    out.print(f"report: {summary['report']}", markup=False)

#!/usr/bin/env python3
"""Import throughput per importer kind against the raw emit rate of the same events, same run.

For each kind (claude-code, openai, anthropic, otel) a file of ~20k records is generated in a temp
directory and imported into a fresh ledger home (embedded SQLite log, durable appends) through
``ledger.sources.importers.import_files``: read + parse + validate + scan of already-imported keys + emit
(chain, sign, append) + flush. Measured right after, in the same process: the raw emit rate, i.e.
``Emitter.emit`` of the very same bodies, times, contexts and idempotency keys (parsed beforehand,
untimed) by another signer at the same batch size. The ratio import / raw is what parsing and
idempotency cost on top of emitting. A re-import of the same file (everything a duplicate) is timed
too. One process, one thread; best of 3 runs per figure.

    python scripts/bench_import.py                   # ~20k records per kind
    python scripts/bench_import.py --records 50000
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ledger.sdk.emitter import DEFAULT_BATCH_SIZE, Emitter
from ledger.sdk.home import Home
from ledger.sources.importers import KINDS, import_files, parse
from ledger.testing.homes import make_home  # the tests' home builder: operator + registered signers

T0_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z, as tests/support.T0
T0_S = T0_US // 1_000_000
RUNS = 3  # timed runs per figure; the best is printed (the machine is shared and noisy)
MODELS = ("claude-haiku-4-5", "claude-sonnet-4-6", "claude-opus-4-6")


# ------------------------------------------------------------------------------ generated inputs


def workflow_file(n: int) -> str:
    """One wf_*.json run with n agents over 5 stages (a phase header before each stage)."""
    entries: list[dict[str, Any]] = []
    per_stage = max(1, n // 5)
    for i in range(n):
        stage = f"Stage-{i // per_stage}"
        if i % per_stage == 0:
            entries.append({"type": "workflow_phase", "phaseTitle": stage})
        entries.append({"type": "workflow_agent", "agentId": f"agent-{i:06d}", "label": "worker", "phaseTitle": stage,
                        "model": MODELS[i % 3], "state": "completed", "tokens": 20_000 + i % 9_000,
                        "toolCalls": i % 12})
    total = sum(e["tokens"] for e in entries if e["type"] == "workflow_agent")
    return json.dumps({"runId": "wf_bench-0001", "workflowName": "bench", "status": "completed", "totalTokens": total,
                       "workflowProgress": entries})


def openai_lines(n: int) -> str:
    return "".join(json.dumps({
        "id": f"chatcmpl-{i:08d}", "object": "chat.completion", "created": T0_S + i, "model": "gpt-4.1",
        "choices": [], "usage": {"prompt_tokens": 1_000 + i % 5_000, "completion_tokens": 200 + i % 700,
                                 "total_tokens": 1_200 + i % 5_000 + i % 700,
                                 "prompt_tokens_details": {"cached_tokens": i % 400},
                                 "completion_tokens_details": {"reasoning_tokens": i % 100}}}) + "\n"
        for i in range(n))


def anthropic_lines(n: int) -> str:
    return "".join(json.dumps({
        "id": f"msg_{i:08d}", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6", "content": [],
        "created": T0_S + i, "usage": {"input_tokens": 100 + i % 900, "output_tokens": 200 + i % 700,
                                       "cache_creation_input_tokens": i % 300, "cache_read_input_tokens": i % 4_000}})
        + "\n" for i in range(n))


def otel_lines(n: int) -> str:
    def span(i: int) -> dict[str, Any]:
        attrs = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4.1",
                 "gen_ai.usage.input_tokens": 1_000 + i % 5_000, "gen_ai.usage.output_tokens": 200 + i % 700,
                 "gen_ai.usage.cache_read.input_tokens": i % 400}
        encoded: Any = attrs if i % 2 else [
            {"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}}
            for k, v in attrs.items()]
        return {"traceId": f"{i:032x}", "spanId": f"{i + 1:016x}", "name": "chat gpt-4.1",
                "startTimeUnixNano": str((T0_US + i) * 1_000), "attributes": encoded}
    return "".join(json.dumps(span(i)) + "\n" for i in range(n))


GENERATORS: dict[str, tuple[str, Callable[[int], str]]] = {
    "claude-code": ("wf_bench-0001.json", workflow_file),
    "openai": ("openai.jsonl", openai_lines),
    "anthropic": ("anthropic.jsonl", anthropic_lines),
    "otel": ("otel.jsonl", otel_lines),
}


# ------------------------------------------------------------------------------ homes and emitters


def timed(home: Home, signer: str, work: Callable[[Emitter], Any]) -> float:
    log = home.open_log()
    try:
        with Emitter(log, home.load_key(signer), topic=home.topic, state_dir=home.state_dir,
                     batch_size=DEFAULT_BATCH_SIZE, background_flush=False) as em:
            start = time.perf_counter()
            work(em)
            em.flush()
            return time.perf_counter() - start
    finally:
        log.close()


def bench_kind(kind: str, records: int, tmp: Path) -> dict[str, float]:
    name, generate = GENERATORS[kind]
    source = tmp / kind / name
    source.parent.mkdir(parents=True)
    source.write_text(generate(records))
    parsed = parse(kind, source.read_bytes(), source=str(source), event_time_us=T0_US)
    assert not parsed.problems, parsed.problems[:3]
    count = len(parsed.records)
    best = {"import": 0.0, "reimport": 0.0, "raw": 0.0, "parse": 0.0}
    for run in range(RUNS):
        home = make_home(tmp / f"{kind}-home-{run}", agents=("importer", "raw-emitter"))
        took = timed(home, "importer", lambda em: import_files(kind, [source], em, event_time_us=T0_US))
        best["import"] = max(best["import"], count / took)
        took = timed(home, "importer", lambda em: import_files(kind, [source], em, event_time_us=T0_US))
        best["reimport"] = max(best["reimport"], count / took)

        def raw(em: Emitter) -> None:
            for r in parsed.records:
                em.emit(r.body, event_time_us=r.event_time_us, context=r.context, idempotency_key=r.idempotency_key)
        best["raw"] = max(best["raw"], count / timed(home, "raw-emitter", raw))
        start = time.perf_counter()
        parse(kind, source.read_bytes(), source=str(source), event_time_us=T0_US)
        best["parse"] = max(best["parse"], count / (time.perf_counter() - start))
    best["records"] = count
    best["bytes"] = source.stat().st_size
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=20_000, help="records per generated file")
    ap.add_argument("--kind", choices=KINDS, action="append", help="only these kinds (repeatable)")
    args = ap.parse_args()
    print(f"tokenledger import benchmark — Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, one thread, "
          f"SQLite {sqlite3.sqlite_version} (embedded log, durable appends), batch {DEFAULT_BATCH_SIZE}, "
          f"best of {RUNS}")
    print()
    print(f"{'kind':<12} {'records':>8} {'file':>9} {'parse only':>12} {'import':>12} {'raw emit':>12} "
          f"{'import/raw':>10} {'re-import':>12}")
    with tempfile.TemporaryDirectory() as d:
        for kind in args.kind or KINDS:
            r = bench_kind(kind, args.records, Path(d))
            print(f"{kind:<12} {int(r['records']):>8,} {r['bytes'] / 1e6:>7.1f}MB {r['parse']:>10,.0f}/s "
                  f"{r['import']:>10,.0f}/s {r['raw']:>10,.0f}/s {r['import'] / r['raw']:>10.2f} "
                  f"{r['reimport']:>10,.0f}/s")
    print()
    print("import = read + parse + validate + scan of the signer's imported keys + emit (chain, sign, durable "
          "append); raw emit = Emitter.emit of the same parsed events; re-import = the same file again (all "
          "duplicates: scan + parse + compare, nothing appended)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

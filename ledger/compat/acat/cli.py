"""``agent_cost_attribution.cli`` on the ledger: ``render(run)`` (the per-stage waterfall with bars, the degradation
warning, the estimate's caveat) and ``main(argv)`` (``python -m ledger.compat.acat <run.json | run-dir> ...``).

``main``: no arguments -> usage on stderr, exit 2; a directory stands for its ``wf_*.json`` files (sorted); no file
at all -> "no run files found", exit 1. Each run is printed, then a blank line; a file that could not be opened
(``load_run`` gave ``{}``) or was refused (a ValidationError: the field, the value and why) is reported on stderr and
the next file is read. Exit 0 when every file was rendered, 1 when any was not (deviation 7 of ``ledger.compat.acat``).

Layout of one run (stages by tokens, largest first; a bar ``#`` per 2 % of the reported total)::

    {workflow or ?}  {run_id}  status={status}  total={tokens:,} tok  ~${usd:,.2f}  invariant_ok={True|False}
      {stage:14} {tokens:>9,}  {pct:5.1f}%  ~${usd:>7,.2f}  n={agents:<3} ####
      ! DEGRADED ...  (then one line per finding)          -- only when there are findings
      ...priced as opus...                                 -- only when a model matched no tier
      ($ = estimate ...)
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from ledger.compat.acat.ledger import as_run, load_run
from ledger.compat.acat.pricing import DEFAULT_INPUT_SHARE
from ledger.errors import ValidationError
from ledger.sources import attribution
from ledger.units import MICROS_PER_USD

USAGE = "usage: python -m ledger.compat.acat <run.json | run-dir> ..."
RUN_FILE_GLOB = "wf_*.json"  # the files a directory argument stands for
STAGE_WIDTH = 14  # characters of the stage column
PCT_PER_BAR_MARK = 2  # one '#' per this many percent of the reported total


def usd(micros: int) -> str:
    """Whole micro-USD as dollars with thousands separators and 2 decimals (half-to-even on the exact amount)."""
    return f"{Decimal(micros) / MICROS_PER_USD:,.2f}"


def render(run: Any, *, input_share: Any = DEFAULT_INPUT_SHARE) -> str:
    """The run's waterfall as text (module doc); a ValidationError for a run with a bad field."""
    wf = as_run(run)
    rep = attribution.report(wf, input_share=input_share)
    s, cost = rep.summary, dict(rep.cost.by_stage)
    lines = [f"{s.workflow or '?'}  {s.run_id}  status={s.status}  total={s.total_tokens:,} tok  "
             f"~${usd(rep.cost.total_micros)}  invariant_ok={s.invariant_ok}"]
    for st in sorted(s.stages, key=lambda row: -row.tokens):  # stable: equal stages keep first-seen order
        bar = "#" * round(st.pct / PCT_PER_BAR_MARK)  # half-to-even, as the reference
        lines.append(f"  {st.stage:{STAGE_WIDTH}s} {st.tokens:>9,}  {st.pct:5.1f}%  ~${usd(cost.get(st.stage, 0)):>7}"
                     f"  n={st.count:<3d} {bar}")
    if rep.findings:
        lines.append("  ! DEGRADED — this run's cost numbers must not be published:")
        lines.extend(f"      [{f.severity}] {f.stage}: {f.kind} — {f.detail}" for f in rep.findings)
    if rep.cost.assumed_models:
        named = ", ".join(m or "(no model)" for m in rep.cost.assumed_models)
        lines.append(f"  models in no price tier, priced as {attribution.UNKNOWN_TIER_PRICED_AS}: {named}")
    share = float(rep.cost.input_share)
    lines.append(f"  ($ is an estimate: list prices, {share:.0%} of each token priced as input; "
                 "the telemetry has no input/output split)")
    return "\n".join(lines)


def _paths(args: Sequence[str]) -> Iterator[Path]:
    for arg in args:
        p = Path(arg)
        if p.is_dir():
            yield from sorted(p.glob(RUN_FILE_GLOB))
        else:
            yield p


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(USAGE, file=sys.stderr)
        return 2
    paths = list(_paths(args))
    if not paths:
        print("no run files found", file=sys.stderr)
        return 1
    failed = 0
    for path in paths:
        try:
            run = load_run(path)
            if not run:
                print(f"{path}: unreadable/empty", file=sys.stderr)
                failed += 1
                continue
            text = render(run)
        except ValidationError as e:
            print(f"{path}: {e}", file=sys.stderr)
            failed += 1
            continue
        print(text)
        print()
    return 1 if failed else 0


__all__ = ["main", "render"]

"""``python -m ledger.compat.cwep``: the ``cwep`` command line (estimate, meter, allocate, settle, status) on a
ledger home (``--store DIR``, default ``.cwep``; created when missing).

Global options come before the command: ``--store DIR``, ``--json`` (JSON output), ``--version``. Text output is
one ``key: value`` line per field (nested dicts indented one level; every float as ``$`` with six decimals, as
the reference prints them; other values as they are). ``settle`` allocates every stored CMR and records one
settlement per (interaction, method): running it again records nothing new. Bad input (an unknown model, a
negative count) exits 2 with the field named.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ledger.errors import LedgerError

from .allocation import allocate
from .metering import DEFAULT_MODEL, DEFAULT_PROVIDER, Meter, estimate_interaction_cost
from .schema import PROTOCOL_VERSION, AllocationMethod
from .store import CWEPStore

EXIT_BAD_INPUT = 2
METHODS = [m.value for m in AllocationMethod if m is not AllocationMethod.BENEFICIARY_PAYS]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cwep", description="Context Window Economics on a tokenledger home")
    p.add_argument("--store", default=".cwep", help="the ledger home (created when missing)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--version", action="version", version=f"cwep {PROTOCOL_VERSION}")
    sub = p.add_subparsers(dest="command")

    def sizes(c: argparse.ArgumentParser) -> None:
        c.add_argument("--request-tokens", type=int, required=True)
        c.add_argument("--response-tokens", type=int, required=True)
        c.add_argument("--req-model", default=DEFAULT_MODEL)
        c.add_argument("--resp-model", default=DEFAULT_MODEL)
        c.add_argument("--req-provider", default=DEFAULT_PROVIDER)
        c.add_argument("--resp-provider", default=DEFAULT_PROVIDER)

    sizes(sub.add_parser("estimate", help="cost of an interaction before it happens"))
    meter = sub.add_parser("meter", help="record an interaction as a signed ledger event")
    sizes(meter)
    for c in (meter,):
        c.add_argument("--requestor", required=True)
        c.add_argument("--responder", required=True)
        c.add_argument("--request-cached", type=int, default=0)
        c.add_argument("--response-cached", type=int, default=0)
    alloc = sub.add_parser("allocate", help="split an interaction's cost (nothing stored)")
    sizes(alloc)
    alloc.add_argument("--requestor", required=True)
    alloc.add_argument("--responder", required=True)
    alloc.add_argument("--method", choices=METHODS, default="shapley")
    alloc.add_argument("--alpha", type=float, default=0.5, help="nash_bargaining: the requestor's power")
    alloc.add_argument("--value-a", type=float, default=1.0, help="nash_bargaining: the requestor's value, USD")
    alloc.add_argument("--value-b", type=float, default=0.5, help="nash_bargaining: the responder's value, USD")
    settle = sub.add_parser("settle", help="allocate the stored CMRs and record the settlements")
    settle.add_argument("--method", choices=METHODS, default="shapley")
    settle.add_argument("--limit", type=int, default=0, help="only the last N CMRs (0: all)")
    sub.add_parser("status", help="counts and costs of the store")
    return p


def _meter(args: argparse.Namespace) -> Any:
    return Meter(args.requestor, args.req_model, args.req_provider).record_interaction(
        responder_id=args.responder, responder_model=args.resp_model, responder_provider=args.resp_provider,
        request_tokens=args.request_tokens, response_tokens=args.response_tokens,
        request_cached_tokens=getattr(args, "request_cached", 0),
        response_cached_tokens=getattr(args, "response_cached", 0))


def _nash(args: argparse.Namespace) -> dict[str, Any]:
    if args.method != "nash_bargaining":
        return {}
    return {"alpha": args.alpha, "value_a": args.value_a, "value_b": args.value_b}


def _run(args: argparse.Namespace) -> Any:
    if args.command == "estimate":
        return estimate_interaction_cost(args.request_tokens, args.response_tokens, args.req_model,
                                         args.req_provider, args.resp_model, args.resp_provider)
    if args.command == "allocate":
        cmr = _meter(args)
        return {"interaction": cmr.to_dict(), "allocation": allocate(cmr, args.method, **_nash(args)).to_dict()}
    store = CWEPStore(args.store)
    if args.command == "meter":
        cmr = _meter(args)
        store.append_cmr(cmr)
        return cmr.to_dict()
    if args.command == "settle":
        done = {(s.get("interaction_id"), s.get("method")) for s in store.read_settlements()}
        settlements = []
        for cmr in store.read_cmrs(limit=args.limit):
            record = {"interaction_id": cmr.interaction_id, **allocate(cmr, args.method).to_dict()}
            settlements.append(record)
            if (cmr.interaction_id, args.method) not in done:
                store.append_settlement(record)
        return {"settlements": settlements, "count": len(settlements)}
    return store.statistics()


def _text(result: dict[str, Any]) -> str:
    def value(v: Any) -> str:
        return f"${v:.6f}" if isinstance(v, float) else f"({len(v)} items)" if isinstance(v, list) else str(v)

    lines = []
    for k, v in result.items():
        if isinstance(v, dict):
            lines.append(f"{k}:")
            lines.extend(f"  {kk}: {value(vv)}" for kk, vv in v.items())
        else:
            lines.append(f"{k}: {value(v)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        result = _run(args)
    except LedgerError as e:
        print(f"cwep: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(result, indent=2) if args.json else _text(result))
    return 0

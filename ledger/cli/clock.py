"""``tokenledger clock show | set`` and ``tokenledger agent grant | ungrant``: the operator's say over time.

Readers judge every claimed event time against its record's append time (the skew window, set by
``clock_policy`` control events) and accept older claims only from a signer the operator granted
``backfill`` with a maximum age (``grant`` control events; the other capabilities — notary, grader,
reserve — are granted the same way). Both are control events signed by the operator, never by an agent,
and apply to the records appended after them.
"""

from __future__ import annotations

from typing import Any

import typer

from ledger import limits
from ledger.cli.agents import control_ring
from ledger.cli.output import HomeOpt, JsonOpt, LogOpt, guarded, open_home, operator_emit, print_json, table
from ledger.errors import ValidationError
from ledger.integrity.keyring import KeyRing
from ledger.wire.events import ClockPolicy
from ledger.wire.timefmt import fmt_duration, parse_duration

clock_app = typer.Typer(no_args_is_help=True,
                        help="The skew window: how far an event's claimed time may lie from its append time.",
                        epilog="Example: tokenledger clock set --behind 5m --ahead 1m")


def register(app: typer.Typer) -> None:
    """Add the ``clock`` group to ``app``."""
    app.add_typer(clock_app, name="clock")


def _window(ring: KeyRing) -> dict[str, Any]:
    w = ring.skew
    return {"max_behind_us": w.max_behind_us, "max_ahead_us": w.max_ahead_us,
            "behind": fmt_duration(w.max_behind_us), "ahead": fmt_duration(w.max_ahead_us),
            "default": (w.max_behind_us, w.max_ahead_us) == (limits.DEFAULT_MAX_CLOCK_BEHIND_US,
                                                             limits.DEFAULT_MAX_CLOCK_AHEAD_US)}


def _grants(ring: KeyRing) -> list[dict[str, Any]]:
    return [{"agent_id": g.agent_id, "capability": g.capability, "scope": g.scope, "max_age_us": g.max_age_us,
             "max_age": fmt_duration(g.max_age_us) if g.max_age_us else ""}
            for _, g in sorted(ring.grants.items())]


@clock_app.command("show", epilog="Example: tokenledger clock show --json")
@guarded
def clock_show(home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """The skew window in force for the next record appended, and every grant in force."""
    ring = control_ring(open_home(home), log)
    w, grants = _window(ring), _grants(ring)
    if json_:
        print_json({"window": w, "grants": grants})
        return
    table("skew window", ["field", "value"],
          [["behind", f"{w['behind']} ({w['max_behind_us']} us)"], ["ahead", f"{w['ahead']} ({w['max_ahead_us']} us)"],
           ["default", "yes" if w["default"] else "no (set by a clock_policy)"]])
    table("grants", ["signer", "capability", "scope", "max age"],
          [[g["agent_id"], g["capability"], g["scope"], g["max_age"]] for g in grants])


@clock_app.command("set", epilog="Example: tokenledger clock set --behind 10m --ahead 30s")
@guarded
def clock_set(behind: str | None = typer.Option(None, help="How far before its append time an event may claim "
                                                              "to be (like 5m; default: unchanged)."),
              ahead: str | None = typer.Option(None, help="How far after its append time (like 1m; default: "
                                                            "unchanged)."),
              home: str | None = HomeOpt, log: str | None = LogOpt, json_: bool = JsonOpt) -> None:
    """Append a clock_policy: the new window applies to the records appended after it (never to earlier ones).

    Behind is normally the wider side: an honest batch waits in its emitter (linger, retries) before the log
    appends it; ahead only covers clock error. Windows wider than a day are refused: historical imports need
    a backfill grant (``tokenledger agent grant NAME backfill --max-age 30d``), not a wide window."""
    h = open_home(home)
    if behind is None and ahead is None:
        raise ValidationError("behind", None, "give --behind, --ahead or both (like --behind 5m --ahead 1m)")
    current = control_ring(h, log).skew
    body = ClockPolicy(max_behind_us=current.max_behind_us if behind is None else parse_duration(behind, "behind"),
                       max_ahead_us=current.max_ahead_us if ahead is None else parse_duration(ahead, "ahead"))
    (event_id,) = operator_emit(h, log, [body])
    info = {"max_behind_us": body.max_behind_us, "max_ahead_us": body.max_ahead_us,
            "behind": fmt_duration(body.max_behind_us), "ahead": fmt_duration(body.max_ahead_us),
            "event_id": event_id}
    print_json(info) if json_ else table("clock policy appended", ["field", "value"],
                                         [[a, b] for a, b in info.items()])

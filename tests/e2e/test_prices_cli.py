"""`tokenledger prices list | show | set | load | sync | alias` on a real home (embedded log): the book the log holds, changed only
by operator-signed price_set events. Rates typed in USD per million tokens are stored exactly as micro-USD; a rate
finer than a micro-dollar, a float in a file, an unknown field or a missing rate is refused naming the field, and
nothing is appended; a back-dated price is in force from when it was recorded; loading a file twice appends nothing
the second time; the processors charge what the book says."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from support.econ import rows, run
from typer.testing import CliRunner

from ledger.sdk.emitter import Emitter
from ledger.sdk.home import Home
from ledger.sdk.price_log import read_price_sets
from ledger.testing.homes import make_home
from ledger.wire.events import Context
from processors.cli import build_app

cli = CliRunner()
app = build_app()


def tl(h: Home, *args: str, code: int = 0) -> object:
    r = cli.invoke(app, [*args, "--home", str(h.path)])
    assert r.exit_code == code, r.output
    return json.loads(r.output) if "--json" in args and code == 0 else r.output


def price_sets(h: Home) -> int:
    with h.open_log() as lg:
        return len(read_price_sets(lg, h.control_topic, h.anchors()))


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return make_home(tmp_path / "home", agents=("alice",))


def test_set_list_show_and_never_retroactive(home: Home) -> None:
    before = price_sets(home)
    past = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 86_400))
    made = tl(home, "prices", "set", "anthropic/claude-haiku-4-5", "--input", "1", "--output", "5",
              "--cache-read", "0.1", "--cache-write", "1.25", "--effective", past, "--json")
    assert len(made["appended"]) == 1 and made["appended"][0]["retroactive_refused"] is True
    assert price_sets(home) == before + 1
    listed = tl(home, "prices", "list", "--provider", "anthropic", "--model", "haiku", "--json")
    (row,) = listed
    assert (row["input_micros_per_mtok"], row["output_micros_per_mtok"], row["cache_read_micros_per_mtok"],
            row["cache_write_micros_per_mtok"], row["reasoning_micros_per_mtok"]) == (
                1_000_000, 5_000_000, 100_000, 1_250_000, 5_000_000)
    assert row["input_usd_per_mtok"] == "1.00" and row["cache_read_usd_per_mtok"] == "0.10"
    # declared a day ago, in force only from when it was recorded
    assert row["in_force_from_us"] > time.time_ns() // 1000 - 60_000_000
    assert row["event_id"] == made["appended"][0]["event_id"]
    # a price a day ahead: listed only from then; `show` has both, the first one current
    ahead = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86_400))
    tl(home, "prices", "set", "anthropic/claude-haiku-4-5", "--input", "2", "--output", "10", "--effective", ahead)
    now_row = tl(home, "prices", "list", "--provider", "anthropic", "--model", "haiku", "--json")[0]
    later = tl(home, "prices", "list", "--provider", "anthropic", "--model", "haiku", "--as-of",
               str(time.time_ns() // 1000 + 2 * 86_400_000_000), "--json")[0]
    assert now_row["input_micros_per_mtok"] == 1_000_000 and later["input_micros_per_mtok"] == 2_000_000
    assert later["cache_read_micros_per_mtok"] == 2_000_000  # cache rates default to the input rate
    history = tl(home, "prices", "show", "anthropic/claude-haiku-4-5", "--json")["prices"]
    assert [h["input_micros_per_mtok"] for h in history] == [1_000_000, 2_000_000]
    assert [h["current"] for h in history] == [True, False]
    assert "claude-haiku-4-5" in tl(home, "prices", "show", "claude-haiku-4-5")  # any provider: a table


@pytest.mark.parametrize("args,field", [
    (["--input", "0.0000001", "--output", "1"], "price.input"),  # finer than a micro-dollar
    (["--input", "-1", "--output", "1"], "price.input"),
    (["--input", "nan", "--output", "1"], "price.input"),
    (["--input", "one", "--output", "1"], "price.input"),
    (["--input", "1", "--output", "1", "--cache-read", "1e9"], "price.cache_read"),  # over the rate limit
    (["--input", "1", "--output", "1", "--effective", "yesterday"], "price.effective"),
])
def test_bad_rates_are_refused_naming_the_field_and_append_nothing(home: Home, args: list[str], field: str) -> None:
    before = price_sets(home)
    out = tl(home, "prices", "set", "acme/m1", *args, code=2)
    assert field in out
    assert price_sets(home) == before


def test_set_needs_a_provider(home: Home) -> None:
    assert "PROVIDER/MODEL" in tl(home, "prices", "set", "m1", "--input", "1", "--output", "1", code=2)


def test_load_json_and_yaml_twice_appends_once(home: Home, tmp_path: Path) -> None:
    entries = [{"provider": "acme", "model": "m1", "input": "3", "output": "15", "cache_read": "0.3",
                "cache_write": "3.75"},
               {"provider": "acme", "model": "m2", "input": 2, "output": "8.5"}]
    f = tmp_path / "prices.json"
    f.write_text(json.dumps({"prices": entries}))
    before = price_sets(home)
    first = tl(home, "prices", "load", str(f), "--json")
    assert len(first["appended"]) == 2 and first["unchanged"] == 0
    again = tl(home, "prices", "load", str(f), "--json")
    assert again["appended"] == [] and again["unchanged"] == 2
    assert price_sets(home) == before + 2
    y = tmp_path / "prices.yaml"
    y.write_text("prices:\n  - {provider: acme, model: m1, input: '3', output: '15', cache_read: '0.3', "
                 "cache_write: '3.75'}\n  - {provider: acme, model: m3, input: '0.5', output: '1'}\n")
    third = tl(home, "prices", "load", str(y), "--json")
    assert [a["model"] for a in third["appended"]] == ["m3"] and third["unchanged"] == 1
    m2 = tl(home, "prices", "list", "--provider", "acme", "--model", "m2", "--json")[0]
    assert m2["output_micros_per_mtok"] == 8_500_000


@pytest.mark.parametrize("doc,field", [
    ({"prices": [{"provider": "acme", "model": "m1", "input": 0.1, "output": "1"}]}, "prices[0].input"),  # a float
    ({"prices": [{"provider": "acme", "model": "m1", "input": "1"}]}, "prices[0].output"),
    ({"prices": [{"provider": "acme", "model": "m1", "input": "1", "output": "1", "outptu": "2"}]},
     "prices[0].outptu"),
    ({"prices": [{"provider": "acme", "model": "m1", "input": "1", "output": "1"}, "x"]}, "prices[1]"),
    ({"prices": []}, "file"),
    ({"price": []}, "file"),
])
def test_a_bad_price_file_is_refused_whole(home: Home, tmp_path: Path, doc: object, field: str) -> None:
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(doc))
    before = price_sets(home)
    assert field in tl(home, "prices", "load", str(f), code=2)
    assert price_sets(home) == before
    f.write_text("{not json")
    assert "not valid JSON" in tl(home, "prices", "load", str(f), code=2)


def test_the_processors_charge_the_price_the_cli_set(home: Home) -> None:
    """A call priced through `prices set`: the budgets processor counts the book's cost against a USD budget
    (1M input tokens at $2 and 0.5M output tokens at $4 per million: $4 = 4,000,000 micro-USD)."""
    tl(home, "prices", "set", "acme/m9", "--input", "2", "--output", "4")
    tl(home, "budget", "set", "agent", "alice", "--kind", "usd", "--allocation", "100000000")
    t = time.time_ns() // 1000 + 1_000_000  # after the price was recorded
    with Emitter.open("alice", home=home.path, context=Context(org="o", project="p", task="t"),
                      background_flush=False) as em:
        em.action("llm", provider="acme", model="m9", input_tokens=1_000_000, output_tokens=500_000, event_time_us=t)
    run(home, "budgets")
    got = rows(home, "budgets", "SELECT consumed, unpriced_calls FROM budgets WHERE scope = 'agent' AND "
                                "scope_id = 'alice' AND budget_kind = 'usd'")
    assert got == [(4_000_000, 0)]


def test_sync_twice_appends_nothing_the_second_time(home: Home) -> None:
    """`prices sync` appends what the installed catalog has and the book lacks; the same sync again appends nothing;
    the dry run says exactly what the real one then appends."""
    planned = tl(home, "prices", "sync", "--provider", "anthropic", "--dry-run", "--json")
    before = price_sets(home)
    assert price_sets(home) == before  # a dry run appends nothing
    done = tl(home, "prices", "sync", "--provider", "anthropic", "--json")
    assert len(done["appended"]) == len(planned["would_append"]) > 50
    assert [(d["kind"], d["model"]) for d in done["appended"]] == [(w["kind"], w["model"])
                                                                   for w in planned["would_append"]]
    assert done["catalog"]["source"].startswith("genai-prices ")
    assert price_sets(home) == before + len(done["appended"])
    again = tl(home, "prices", "sync", "--provider", "anthropic", "--json")
    assert again["appended"] == [] and price_sets(home) == before + len(done["appended"])
    shown = tl(home, "prices", "show", "anthropic/claude-haiku-4-5-20251001", "--json")
    assert (shown["resolved"]["model"], shown["resolved"]["via"]) == ("claude-haiku-4-5", "rule")
    assert shown["resolved"]["rule_event_id"] in {d["event_id"] for d in done["appended"]}
    assert "is not in the price catalog" in tl(home, "prices", "sync", "--provider", "no-such-provider", code=2)


def test_alias_maps_ids_to_a_priced_model_and_can_be_withdrawn(home: Home) -> None:
    tl(home, "prices", "set", "acme/m9", "--input", "2", "--output", "4")
    refused = tl(home, "prices", "alias", "proxy-*", "acme/not-priced", code=2)
    assert "has no price" in refused
    made = tl(home, "prices", "alias", "Proxy-*", "acme/m9", "--json")
    (event,) = made["appended"]
    assert event["kind"] == "price_match" and event["tier"] == '{"starts_with":"proxy-"}'
    shown = tl(home, "prices", "show", "gateway/proxy-large-v2", "--json")
    assert (shown["resolved"]["provider"], shown["resolved"]["model"]) == ("acme", "m9")
    assert shown["resolved"]["rule_event_id"] == event["event_id"]
    assert tl(home, "prices", "alias", "Proxy-*", "acme/m9", "--json")["appended"] == []  # the same rule again
    tl(home, "prices", "alias", "proxy-*", "acme/m9", "--remove")
    assert "no match rule" in tl(home, "prices", "show", "gateway/proxy-large-v2", code=2)


@pytest.mark.parametrize(("pattern", "regex", "rule"), [
    ("gpt-4.1", False, '{"equals":"gpt-4.1"}'),
    ("*-latest", False, '{"ends_with":"-latest"}'),
    ("*sonnet*", False, '{"contains":"sonnet"}'),
    ("claude-*-v1:0", False, r'{"regex":"^claude\\-.*\\-v1:0$"}'),
    ("^o[134]", True, '{"regex":"^o[134]"}'),
])
def test_alias_patterns_become_clauses(pattern: str, regex: bool, rule: str) -> None:
    from ledger.cli.prices import pattern_rule

    assert pattern_rule(pattern, regex=regex) == rule

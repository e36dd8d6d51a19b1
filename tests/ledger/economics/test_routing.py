"""ledger.economics.routing and ledger.economics.blended: the role table (unknown roles fail closed), overrides (fail
soft, every ignored part reported), per-message escalation, and the savings estimate on measured volumes (exact
micro-USD, labelled an estimate). Inputs are written here; expected amounts are worked out by hand in the comments."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from ledger import limits
from ledger.economics import blended, routing
from ledger.economics.routing import (
    ESTIMATE_BASIS,
    MessageRouter,
    RoleConfig,
    RoleOverride,
    RoleTable,
    parse_overrides,
    priciest_model,
    read_overrides,
    role_table_from,
    savings_estimate,
    volumes_by_role,
)
from ledger.errors import ValidationError
from ledger.sources.attribution import WorkflowAgent, WorkflowRun, run_savings

TABLE = {
    "chat": {"model": "claude-sonnet-4-6", "effort": "medium"},
    "chat_deep": {"model": "claude-opus-4-6", "effort": "high"},
    "extract": {"model": "claude-haiku-4-5"},
}
ESCALATE = r"^(?:debug|refactor)\b"


def table() -> RoleTable:
    return RoleTable(role_table_from(TABLE))


# -------------------------------------------------------------------------------- blended


def test_blended_rates_per_tier_in_micros_per_mtok() -> None:
    # 0.85 x in + 0.15 x out: opus 0.85*5 + 0.15*25 = 8.0 USD/MTok; haiku 0.85*1 + 0.15*5 = 1.6
    assert blended.blended_rate("claude-opus-4-6") == 8_000_000
    assert blended.blended_rate("claude-haiku-4-5") == 1_600_000
    assert blended.blended_rate("claude-fable-5", 1) == 10_000_000
    assert blended.blended_rate("x-sonnet", 0) == 15_000_000
    assert blended.blended_rate("gpt-4.1") == 8_000_000  # no tier: priced as opus by the reference table
    assert blended.tier("gpt-4.1") is None and blended.tier("CLAUDE-Sonnet-opus") == "opus"


def test_estimate_rounds_once_half_to_even() -> None:
    assert blended.exact_cost(1, "claude-haiku-4-5") == Fraction(8, 5)  # 1.6 micro-USD
    assert blended.estimate_cost_micros(1, "claude-haiku-4-5") == 2
    assert blended.estimate_cost_micros(5, "claude-haiku-4-5") == 8  # exactly 8.0
    # 0.5 micro-USD ties go to even: 5 tokens at 0.1 USD/MTok (a book rate) = 0.5
    assert blended.estimate_cost_micros(5, "m", 1, rates=lambda _m: (100_000, 0)) == 0
    assert blended.estimate_cost_micros(15, "m", 1, rates=lambda _m: (100_000, 0)) == 2
    assert blended.estimate_cost_micros(10, "unpriced", rates=lambda _m: None) is None


@pytest.mark.parametrize("share", [-0.01, 1.5, "0.8", None])
def test_share_out_of_range_or_not_a_number_is_refused(share: object) -> None:
    with pytest.raises(ValidationError) as e:
        blended.blended_rate("claude-opus-4-6", share)  # type: ignore[arg-type]
    assert e.value.field == "input_share"


# -------------------------------------------------------------------------------- role table


def test_resolve_gives_the_roles_config() -> None:
    t = table()
    assert t.resolve("chat") == RoleConfig("claude-sonnet-4-6", "medium")
    assert t.resolve("extract") == RoleConfig("claude-haiku-4-5", None)


@pytest.mark.parametrize("role", ["chta", "", None, 3])
def test_unknown_role_fails_closed(role: object) -> None:
    with pytest.raises(ValidationError) as e:
        table().resolve(role)  # type: ignore[arg-type]
    assert e.value.field == "role" and e.value.value == role


@pytest.mark.parametrize(("roles", "field"), [
    ({"chat": {"effort": "low"}}, "roles[chat].model"),
    ({"chat": {"model": ""}}, "roles[chat].model"),
    ({"chat": {"model": 7}}, "roles[chat].model"),
    ({"chat": "claude-opus-4-6"}, "roles[chat]"),
    ({"chat": {"model": "m", "effort": 2}}, "roles[chat].effort"),
    (["chat"], "roles"),
])
def test_a_bad_role_table_is_refused_at_construction(roles: object, field: str) -> None:
    with pytest.raises(ValidationError) as e:
        role_table_from(roles)  # type: ignore[arg-type]
    assert e.value.field == field


def test_overrides_merge_over_defaults() -> None:
    doc = {"chat": {"model": "  claude-opus-4-6 "}, "extract": {"effort": " low "}, "chat_deep": {"effort": None}}
    overrides, problems = parse_overrides(doc, TABLE)
    assert problems == ()
    t = table().with_overrides(overrides)
    assert t.resolve("chat") == RoleConfig("claude-opus-4-6", "medium")  # model stripped, effort kept
    assert t.resolve("extract") == RoleConfig("claude-haiku-4-5", "low")
    assert t.resolve("chat_deep") == RoleConfig("claude-opus-4-6", None)  # effort key given as null: cleared
    assert table().resolve("chat") == RoleConfig("claude-sonnet-4-6", "medium")  # the base table is unchanged


def test_overrides_ignore_garbage_and_say_why() -> None:
    doc = {"chat": {"model": 42}, "extract": "haiku", "nosuch": {"model": "m"}, "chat_deep": {"model": "   "}}
    overrides, problems = parse_overrides(doc, TABLE)
    assert overrides == {}
    assert [(p.path, p.reason.split(";")[0]) for p in problems] == [
        ("chat.model", "must be a non-empty string"), ("extract", "must be an object {model?, effort?}"),
        ("nosuch", "is not a role of the table"), ("chat_deep.model", "must be a non-empty string")]
    assert table().with_overrides(overrides).resolve("chat") == RoleConfig("claude-sonnet-4-6", "medium")


def test_override_of_an_unknown_role_cannot_be_forced_in() -> None:
    with pytest.raises(ValidationError):
        RoleTable(role_table_from(TABLE), {"nosuch": RoleOverride(model="m")})


def test_read_overrides_fails_soft(tmp_path: Path) -> None:
    roles = role_table_from(TABLE)
    missing, problems = read_overrides(tmp_path / "absent.json", roles)
    assert missing == {} and len(problems) == 1 and "cannot be read" in problems[0].reason
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    got, problems = read_overrides(bad, roles)
    assert got == {} and "is not JSON" in problems[0].reason
    listed = tmp_path / "list.json"
    listed.write_text("[1]")
    got, problems = read_overrides(listed, roles)
    assert got == {} and problems[0].reason == "the overrides file must hold a JSON object"
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (limits.MAX_ROUTING_OVERRIDES_BYTES + 1))
    got, problems = read_overrides(big, roles)
    assert got == {} and "larger than" in problems[0].reason
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"extract": {"model": "claude-sonnet-4-6"}}))
    got, problems = read_overrides(good, roles)
    assert problems == () and got == {"extract": RoleOverride(model="claude-sonnet-4-6")}


# -------------------------------------------------------------------------------- message routing


def router(**kw: object) -> MessageRouter:
    tags = {"Deep": {"model": "claude-fable-5", "effort": "high"}, "cheap": RoleConfig("claude-haiku-4-5")}
    return MessageRouter(table(), tags=tags, deep_pattern=ESCALATE, **kw)  # type: ignore[arg-type]


def test_message_routing_order_tag_then_pattern_then_default() -> None:
    r = router()
    plain = r.route("summarise the thread")
    assert (plain.config, plain.text, plain.reason) == (RoleConfig("claude-sonnet-4-6", "medium"),
                                                        "summarise the thread", "default")
    deep = r.route("Debug the flaky test")
    assert (deep.config.model, deep.reason, deep.text) == ("claude-opus-4-6", "deep", "Debug the flaky test")
    tagged = r.route("!cheap debug the flaky test")
    assert (tagged.config, tagged.text, tagged.reason) == (RoleConfig("claude-haiku-4-5"), "debug the flaky test",
                                                           "tag:cheap")
    mid = r.route("please  !DEEP\tweigh it")
    assert (mid.config.model, mid.text, mid.reason) == ("claude-fable-5", "please weigh it", "tag:deep")


@pytest.mark.parametrize("text", ["wow!cheap models", "!cheaper please", "!unknown tag"])
def test_things_that_are_not_tags(text: str) -> None:
    got = router().route(text)
    assert got.reason == "default" and got.text == text


def test_non_text_routes_as_empty() -> None:
    got = router().route(None)
    assert (got.reason, got.text) == ("default", "")


def test_no_tags_configured_and_bad_pattern() -> None:
    r = MessageRouter(table(), tags={}, deep_pattern=ESCALATE)
    assert r.route("!cheap x").reason == "default"
    with pytest.raises(ValidationError) as e:
        MessageRouter(table(), tags={}, deep_pattern="(unclosed")
    assert e.value.field == "deep_pattern"


def test_message_routing_to_a_role_the_table_lacks_fails_closed() -> None:
    r = router(default_role="nosuch")
    with pytest.raises(ValidationError) as e:
        r.route("hello")
    assert e.value.value == "nosuch"


# -------------------------------------------------------------------------------- savings


def test_savings_estimate_exact_micros_and_labelled() -> None:
    # chat 1,000,000 sonnet (4.8 USD) + extract 1,000,000 haiku (1.6) vs both on opus (8.0 each)
    est = savings_estimate({"chat": 1_000_000, "extract": 1_000_000}, table(), baseline_model="claude-opus-4-6")
    assert (est.baseline_micros, est.routed_micros, est.saved_micros) == (16_000_000, 6_400_000, 9_600_000)
    assert est.saved_pct == 60.0 and est.basis == ESTIMATE_BASIS
    by_map = savings_estimate({"chat": 1_000_000}, {"chat": "claude-haiku-4-5"}, baseline_model="claude-sonnet-4-6")
    assert (by_map.baseline_micros, by_map.routed_micros, by_map.saved_micros) == (4_800_000, 1_600_000, 3_200_000)


def test_savings_estimate_routed_dearer_is_negative() -> None:
    est = savings_estimate({"extract": 10}, {"extract": "claude-opus-4-6"}, baseline_model="claude-haiku-4-5")
    assert (est.baseline_micros, est.routed_micros, est.saved_micros) == (16, 80, -64)
    assert est.saved_pct == -400.0


def test_savings_estimate_refusals() -> None:
    with pytest.raises(ValidationError) as e:
        savings_estimate({"chta": 10}, table(), baseline_model="claude-opus-4-6")
    assert e.value.field == "role"
    with pytest.raises(ValidationError) as e:
        savings_estimate({"chta": 10}, {"chat": "m"}, baseline_model="claude-opus-4-6")
    assert e.value.field == "traffic"
    with pytest.raises(ValidationError) as e:
        savings_estimate({"chat": -1}, table(), baseline_model="claude-opus-4-6")
    assert e.value.field == "traffic[chat]"
    with pytest.raises(ValidationError) as e:
        savings_estimate({"chat": 1}, table(), baseline_model="m", rates=lambda m: None if m == "m" else (1, 1))
    assert e.value.value == "m"


def test_savings_on_a_runs_measured_volumes() -> None:
    agents = (WorkflowAgent(1, "a", "", "Search", "claude-haiku-4-5", "done", 300_000),
              WorkflowAgent(2, "b", "", "Verify", "claude-sonnet-4-6", "done", 600_000),
              WorkflowAgent(3, "c", "", "Search", "claude-haiku-4-5", "done", 100_000))
    run = WorkflowRun("wf_1", "w", "completed", 1_000_000, agents)
    volumes = volumes_by_role((a.stage, a.tokens) for a in run.agents)
    assert volumes == {"Search": 400_000, "Verify": 600_000}
    planned = savings_estimate(volumes, {"Search": "claude-haiku-4-5", "Verify": "claude-sonnet-4-6"},
                               baseline_model="claude-opus-4-6")
    # routed: 400k haiku = 640,000 + 600k sonnet = 2,880,000; baseline 1M opus = 8,000,000
    assert (planned.routed_micros, planned.baseline_micros) == (3_520_000, 8_000_000)
    assert run_savings(run, baseline_model="claude-opus-4-6") == planned  # per agent: the same integers here
    assert priciest_model(a.model for a in run.agents) == "claude-sonnet-4-6"
    assert priciest_model(["x"], rates=lambda _m: None) is None
    with pytest.raises(ValidationError):
        volumes_by_role([("Search", "12")])  # type: ignore[list-item]


def test_metered_savings_use_the_measured_split() -> None:
    calls = [("Search", 900_000, 100_000), ("Verify", 200_000, 50_000), ("Search", 100_000, 0)]
    volumes = routing.metered_volumes(calls)
    assert volumes == {"Search": routing.MeteredVolume(1_000_000, 100_000),
                       "Verify": routing.MeteredVolume(200_000, 50_000)}
    est = routing.metered_savings(volumes, {"Search": "claude-haiku-4-5", "Verify": "claude-sonnet-4-6"},
                                  baseline_model="claude-opus-4-6")
    # routed: Search 1M x 1 + 0.1M x 5 = 1.5 USD; Verify 0.2M x 3 + 0.05M x 15 = 1.35 -> 2,850,000 micro-USD
    # baseline opus: 1.2M x 5 + 0.15M x 25 = 9.75 -> 9,750,000
    assert (est.routed_micros, est.baseline_micros, est.saved_micros) == (2_850_000, 9_750_000, 6_900_000)
    assert est.saved_pct == pytest.approx(100 * 6.9 / 9.75) and "metered input and output" in est.basis
    by_table = routing.metered_savings({"extract": routing.MeteredVolume(3, 1)}, table(), baseline_model="x-opus")
    # haiku: 3 tokens x 1 USD/MTok + 1 x 5 = 8 micro-USD; opus: 3 x 5 + 1 x 25 = 40
    assert (by_table.routed_micros, by_table.baseline_micros, by_table.saved_pct) == (8, 40, 80.0)
    with pytest.raises(ValidationError) as e:
        routing.metered_savings({"nosuch": routing.MeteredVolume(1, 1)}, {"chat": "m"}, baseline_model="m")
    assert e.value.field == "volumes"
    with pytest.raises(ValidationError):
        routing.metered_savings({"chat": (1, 1)}, {"chat": "m"}, baseline_model="m")  # type: ignore[dict-item]
    with pytest.raises(ValidationError) as e:
        routing.metered_volumes([("Search", 1, -1)])
    assert e.value.field == "output_tokens[Search]"
    with pytest.raises(ValidationError):
        routing.metered_savings(volumes, {"Search": "m", "Verify": "m"}, baseline_model="m", rates=lambda _m: None)

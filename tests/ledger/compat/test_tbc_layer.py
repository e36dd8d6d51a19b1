"""ledger.compat.tbc against the installed token-budget-contracts 0.3.0 (the oracle, imported only here): the same
scenarios give the same numbers, except where the layer documents a deviation, which is asserted as such."""

from __future__ import annotations

import pytest
import tbcontracts as ref

from ledger.compat import tbc
from ledger.compat.tbc import adapters, tokenizer
from ledger.compat.tbc.manager import exact_tokens, reported_tokens
from ledger.errors import ValidationError

# ------------------------------------------------------------------ BudgetContract


@pytest.mark.parametrize(("max_tokens", "reserve"), [(1000, 100), (15, 1), (5, 0), (1005, 100), (0, 0)])
def test_contract_default_reserve_is_ten_percent_rounded_down_like_the_reference(max_tokens: int,
                                                                                 reserve: int) -> None:
    ours = tbc.BudgetContract("a", max_tokens=max_tokens)
    assert ours.min_reserve == reserve == ref.BudgetContract("a", max_tokens=max_tokens).min_reserve


def test_contract_is_the_ledgers_llm_tokens_policy() -> None:
    c = tbc.BudgetContract("writer", priority=3, max_tokens=4000, min_reserve=250, confidence_threshold=0.75)
    p = c.policy()
    assert (p.kind.value, p.allocation, p.min_reserve, p.priority, p.confidence_threshold) == (
        "llm_tokens", 4000, 250, 3, 0.75)
    assert p.hard_cap(4000) == 4000 and p.ceiling(4000) == 4000  # nothing beyond max_tokens
    assert p.hard_limit_action.value == "deny"


@pytest.mark.parametrize(("fields", "field_name"), [
    ({"priority": 0}, "priority"),
    ({"max_tokens": -1}, "max_tokens"),
    ({"max_tokens": 100, "min_reserve": 200}, "min_reserve"),
    ({"min_reserve": -1}, "min_reserve"),
    ({"confidence_threshold": 1.5}, "confidence_threshold"),
    ({"confidence_threshold": -0.1}, "confidence_threshold"),
    ({"priority": 1.5}, "priority"),  # deviation: the reference accepts a float priority
    ({"max_tokens": 100.0}, "max_tokens"),  # deviation: token counts are ints
])
def test_contract_refuses_bad_fields_naming_them(fields: dict, field_name: str) -> None:
    with pytest.raises(ValidationError) as e:
        tbc.BudgetContract("a", **fields)
    assert e.value.field == field_name
    assert isinstance(e.value, ValueError)  # what the reference raises


# ------------------------------------------------------------------ Ledger


def test_ledger_matches_the_reference_including_overdraw() -> None:
    ours, theirs = tbc.Ledger(), ref.Ledger()
    for lg in (ours, theirs):
        lg.register("a", 1000)
        lg.register("b", 300)
        lg.record("a", 400, note="n1")
        lg.record("b", 350)  # overdraw through a raw write: remaining goes negative
        lg.adjust_allocation("a", -100)
        lg.record("a", 25)
    assert ours.snapshot() == theirs.snapshot() == {
        "a": {"allocated": 900, "consumed": 425, "remaining": 475},
        "b": {"allocated": 300, "consumed": 350, "remaining": -50}}
    assert [(e.agent_name, e.tokens, e.note) for e in ours.history()] == [("a", 400, "n1"), ("b", 350, ""),
                                                                          ("a", 25, "")]
    assert [e.tokens for e in ours.history("a")] == [400, 25]


def test_ledger_reregistration_resets_allocation_keeps_consumption() -> None:
    lg = tbc.Ledger()
    lg.register("a", 100)
    lg.record("a", 60)
    lg.register("a", 500)
    assert (lg.allocated("a"), lg.consumed("a"), lg.remaining("a")) == (500, 60, 440)


def test_ledger_unknown_agent_is_a_key_error() -> None:
    lg = tbc.Ledger()
    for call in (lambda: lg.record("ghost", 1), lambda: lg.remaining("ghost"), lambda: lg.consumed("ghost"),
                 lambda: lg.allocated("ghost"), lambda: lg.adjust_allocation("ghost", 1)):
        with pytest.raises(KeyError):
            call()


def test_ledger_refuses_negative_and_float_counts() -> None:  # deviation: the reference adds them
    lg = tbc.Ledger()
    lg.register("a", 100)
    with pytest.raises(ValidationError) as e:
        lg.record("a", -5)
    assert (e.value.field, e.value.value) == ("tokens", -5)
    with pytest.raises(ValidationError):
        lg.record("a", 2.5)  # type: ignore[arg-type]
    with pytest.raises(ValidationError) as e:
        lg.adjust_allocation("a", -101)
    assert e.value.field == "allocation"
    assert lg.snapshot()["a"] == {"allocated": 100, "consumed": 0, "remaining": 100}


# ------------------------------------------------------------------ Reallocator


def _team(module: object) -> tuple[dict, object]:
    contracts = {
        "lead": module.BudgetContract("lead", priority=3, max_tokens=1000, min_reserve=100),  # type: ignore[attr-defined]
        "peer": module.BudgetContract("peer", priority=3, max_tokens=400, min_reserve=0),  # type: ignore[attr-defined]
        "low1": module.BudgetContract("low1", priority=1, max_tokens=500, min_reserve=50),  # type: ignore[attr-defined]
        "low2": module.BudgetContract("low2", priority=1, max_tokens=800, min_reserve=80),  # type: ignore[attr-defined]
        "top": module.BudgetContract("top", priority=5, max_tokens=9000, min_reserve=0),  # type: ignore[attr-defined]
    }
    ledger = module.Ledger()  # type: ignore[attr-defined]
    for name, c in contracts.items():
        ledger.register(name, c.max_tokens)
    return contracts, ledger


def test_reallocation_order_and_amounts_match_the_reference_when_covered() -> None:
    results = []
    for module in (tbc, ref):
        contracts, ledger = _team(module)
        ledger.record("lead", 990)
        ledger.record("low2", 300)  # low2: 500 remaining, low1: 500 remaining; tie on remaining
        ledger.record("low1", 100)  # low1: 400 remaining -> low2 (largest remaining) goes first
        r = module.Reallocator(contracts, ledger)
        recovered = r.reallocate("lead", 900)
        results.append((recovered, ledger.snapshot()))
    assert results[0] == results[1]
    recovered, snap = results[0]
    # low2 gives 500 - 80 = 420, low1 gives 400 - 50 = 350, then peer (equal priority) 130; top never gives
    assert recovered == 900
    assert (snap["low2"]["allocated"], snap["low1"]["allocated"], snap["peer"]["allocated"]) == (380, 150, 270)
    assert snap["top"]["allocated"] == 9000
    assert snap["lead"]["allocated"] == 1900


def test_reallocation_is_all_or_nothing() -> None:  # deviation: the reference keeps a partial move
    contracts, ledger = _team(tbc)
    before = ledger.snapshot()
    r = tbc.Reallocator(contracts, ledger)
    assert r.reallocate("low1", 10_000) == 0
    assert ledger.snapshot() == before
    assert r.last_transfers == ()
    ref_contracts, ref_ledger = _team(ref)
    assert ref.Reallocator(ref_contracts, ref_ledger).reallocate("low1", 10_000) == 720  # low2's spare


def test_reallocator_find_donors_lists_only_eligible_in_drain_order() -> None:
    contracts, ledger = _team(tbc)
    r = tbc.Reallocator(contracts, ledger)
    assert r.find_donors("lead") == ["low2", "low1", "peer"]
    assert r.find_donors("low1") == ["low2"]
    assert r.reallocate("lead", 0) == 0 and r.reallocate("lead", -3) == 0
    with pytest.raises(KeyError):
        r.reallocate("ghost", 5)
    with pytest.raises(KeyError):
        r.find_donors("ghost")


def test_overdrawn_donor_has_nothing_to_give() -> None:
    contracts, ledger = _team(tbc)
    ledger.record("low1", 700)  # overdrawn by 200
    ledger.record("low2", 800)
    ledger.record("peer", 400)
    assert tbc.Reallocator(contracts, ledger).find_donors("lead") == []


# ------------------------------------------------------------------ ConfidenceGate


@pytest.mark.parametrize(("threshold", "confidence", "allowed"), [
    (None, 0.99, True), (0.8, None, True), (0.8, 0.5, True), (0.8, 0.8, False), (0.8, 0.95, False),
    (0.0, 0.0, False), (1.0, 0.999, True),
])
def test_confidence_gate_matches_the_reference(threshold: float | None, confidence: float | None,
                                               allowed: bool) -> None:
    ours = tbc.ConfidenceGate.allow_further_retrieval(tbc.BudgetContract("a", confidence_threshold=threshold),
                                                      confidence)
    theirs = ref.ConfidenceGate.allow_further_retrieval(ref.BudgetContract("a", confidence_threshold=threshold),
                                                        confidence)
    assert ours is theirs is allowed


def test_confidence_gate_refuses_out_of_range_confidence() -> None:  # deviation: the reference compares 5.0
    with pytest.raises(ValidationError):
        tbc.ConfidenceGate.allow_further_retrieval(tbc.BudgetContract("a", confidence_threshold=0.5), 5.0)


# ------------------------------------------------------------------ BudgetManager


def test_record_usage_with_reallocation_matches_the_reference() -> None:
    snaps = []
    for module in (tbc, ref):
        m = module.BudgetManager()
        m.register_agent("needy", priority=3, max_tokens=100, min_reserve=0)
        m.register_agent("donor", priority=1, max_tokens=1000, min_reserve=0)
        m.record_usage("needy", 100)  # exactly the allocation: no reallocation
        m.record_usage("needy", 250, note="big")
        snaps.append((m.report(), m.remaining("needy"), m.remaining("donor")))
    assert snaps[0] == snaps[1]
    assert snaps[0][0] == {"needy": {"allocated": 350, "consumed": 350, "remaining": 0},
                           "donor": {"allocated": 750, "consumed": 0, "remaining": 750}}


def test_refused_usage_moves_nothing_and_reports_what_was_available() -> None:
    m = tbc.BudgetManager()
    m.register_agent("needy", priority=3, max_tokens=100, min_reserve=0)
    m.register_agent("donor", priority=1, max_tokens=1000, min_reserve=950)
    with pytest.raises(tbc.BudgetExceededError) as e:
        m.record_usage("needy", 300)
    assert (e.value.agent_name, e.value.requested, e.value.available) == ("needy", 300, 100)
    assert str(e.value) == ("Agent 'needy' requested 300 tokens but only 100 were available even after attempting "
                            "reallocation.")
    assert m.report()["donor"]["allocated"] == 1000  # all or nothing: the 50 the donor could spare stayed
    assert m.report()["needy"] == {"allocated": 100, "consumed": 0, "remaining": 100}


def test_record_usage_refuses_bad_counts_and_unknown_agents() -> None:
    m = tbc.BudgetManager()
    m.register_agent("a", max_tokens=100)
    with pytest.raises(ValueError):
        m.record_usage("a", -5)
    with pytest.raises(ValidationError) as e:
        m.record_usage("a", 1.5)  # type: ignore[arg-type]
    assert e.value.field == "tokens"
    with pytest.raises(ValidationError):
        m.record_usage("a", True)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        m.record_usage("a", 5, confidence=1.5)
    with pytest.raises(tbc.UnknownAgentError):
        m.record_usage("ghost", 1)
    with pytest.raises(tbc.UnknownAgentError):
        m.remaining("ghost")
    assert m.report()["a"]["consumed"] == 0


def test_record_usage_sets_confidence_without_consulting_the_gate() -> None:
    m = tbc.BudgetManager()
    m.register_agent("a", max_tokens=1000, confidence_threshold=0.8)
    m.record_usage("a", 10, confidence=0.9)
    m.record_usage("a", 10)  # the gate is closed, but record_usage records facts (as the reference)
    assert m.contracts["a"].last_confidence == 0.9
    m.record_usage("a", 10, confidence=0.2)
    assert m.contracts["a"].last_confidence == 0.2
    assert m.report()["a"]["consumed"] == 30


def test_idempotency_key_counts_a_retry_once() -> None:
    m = tbc.BudgetManager()
    m.register_agent("a", max_tokens=1000)
    m.record_usage("a", 70, idempotency_key="call-1")
    m.record_usage("a", 70, idempotency_key="call-1")
    m.record_usage("a", 30, idempotency_key="call-2")
    assert m.report()["a"]["consumed"] == 100


def test_reregistering_keeps_consumption() -> None:
    m = tbc.BudgetManager()
    m.register_agent("a", max_tokens=100)
    m.record_usage("a", 80)
    m.register_agent("a", max_tokens=500, priority=2)
    assert m.report()["a"] == {"allocated": 500, "consumed": 80, "remaining": 420}
    assert m.contracts["a"].priority == 2


def test_govern_counts_the_estimate_like_the_reference_without_tiktoken() -> None:
    consumed = []
    for module in (tbc, ref):
        m = module.BudgetManager()
        m.register_agent("w", max_tokens=500)

        @m.govern("w")
        def call(prompt: str, style: str = "", n: int = 3) -> str:
            return "four words of reply"

        assert call("one two three", style="terse please") == "four words of reply"
        consumed.append(m.report()["w"]["consumed"])
    # "one two three" 3 words -> 3; "terse please" 2 -> 2; "four words of reply" 4 -> 5; n=3 counts 0
    assert consumed == [10, 10]


def test_govern_gate_and_refusal() -> None:
    m = tbc.BudgetManager()
    m.register_agent("c", max_tokens=1000, confidence_threshold=0.8)
    calls = []

    @m.govern("c", confidence_fn=lambda r: 0.9)
    def ask(q: str) -> str:
        calls.append(q)
        return "yes"

    ask("first")
    with pytest.raises(tbc.BudgetExceededError) as e:
        ask("second")
    assert e.value.requested == 0 and calls == ["first"]  # refused before the call ran
    m = tbc.BudgetManager()  # alone: no agent of equal or lower priority to lend
    m.register_agent("solo", max_tokens=3, min_reserve=0)

    @m.govern("solo")
    def chatty(q: str) -> str:
        return "far too many words for this tiny budget"

    with pytest.raises(tbc.BudgetExceededError):
        chatty("go")
    assert m.report()["solo"]["consumed"] == 0
    with pytest.raises(tbc.UnknownAgentError):
        m.govern("ghost")


def test_telemetry_recorder_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    m = tbc.BudgetManager(telemetry=provider.get_tracer("t"))
    assert m.telemetry.enabled
    m.register_agent("needy", priority=2, max_tokens=10, min_reserve=0)
    m.register_agent("donor", priority=1, max_tokens=100, min_reserve=0)
    m.record_usage("needy", 40, note="n")
    spans = {s.name: dict(s.attributes or {}) for s in exporter.get_finished_spans()}
    assert spans["tbc.reallocate"] == {"tbc.needy_agent": "needy", "tbc.donor_agent": "donor",
                                       "tbc.tokens_moved": 30, "tbc.shortfall": 30}
    assert spans["tbc.record_usage"] == {"tbc.agent": "needy", "tbc.tokens_used": 40, "tbc.note": "n"}
    assert spans["tbc.register_agent"] == {"tbc.agent": "donor", "tbc.priority": 1, "tbc.max_tokens": 100}
    off = tbc.TelemetryRecorder.disabled()
    with off.span("x", {"a": 1}) as s:
        s.set_attribute("k", "v")
    from ledger.compat.tbc import telemetry
    monkeypatch.setattr(telemetry, "_otel_available", lambda: False)
    assert tbc.BudgetManager().enable_telemetry() is False


# ------------------------------------------------------------------ token estimation and adapters


@pytest.mark.parametrize("text", ["", "a", "one two", " ", "hello,world", "w " * 10, "x " * 77, "y\n" * 1000])
def test_tokenizer_matches_the_reference_heuristic(text: str) -> None:
    from tbcontracts.tokenizer import estimate_tokens as ref_estimate

    assert tokenizer.estimate_tokens((text,), {}, None) == ref_estimate((text,), {}, None)
    assert tokenizer.count_tokens(text) == ref_estimate((text,), {}, None)


def test_adapter_usage_rule() -> None:
    assert [reported_tokens(v) for v in (321, 12.9, True, "5", None, float("nan"), float("inf"))] == [
        321, 12, None, None, None, None, None]
    assert exact_tokens(7) == 7
    with pytest.raises(ValidationError):
        exact_tokens(7.0)


def test_langgraph_adapter() -> None:
    gov = tbc.TBCGraphGovernor()
    gov.register("r", max_tokens=1000, confidence_threshold=0.9)

    def node(state: dict) -> dict:
        return {"notes": "two words", "items": ["three more words", 4], "used": state.get("used")}

    estimated = gov.wrap("r", node, usage_key="used", confidence_key="conf")
    assert estimated({"q": "a b c d e f g h i j"}) == {"notes": "two words", "items": ["three more words", 4],
                                                      "used": None}
    # state 10 words -> 13, "two words" -> 2, "three more words" -> 3
    assert gov.report()["r"]["consumed"] == 18
    estimated({"used": 40.7})
    assert gov.report()["r"]["consumed"] == 58
    assert adapters.langgraph_adapter.estimate_from_state("not a mapping", None) == 0

    def confident(state: dict) -> dict:
        return {"used": 5, "conf": 0.95}

    c = gov.wrap("r", confident, usage_key="used", confidence_key="conf")
    c({})
    with pytest.raises(tbc.BudgetExceededError):
        c({})
    assert gov.report()["r"]["consumed"] == 63
    with pytest.raises(tbc.UnknownAgentError):
        tbc.govern_node(gov.manager, "ghost", node)


def test_crewai_adapter() -> None:
    class Out:
        def __init__(self, output: str) -> None:
            self.output = output

    m = tbc.BudgetManager()
    gov = tbc.TBCCrewGovernor(manager=m)
    gov.register("w", max_tokens=1000)
    run = gov.wrap("w", lambda task: Out("five words in this output"), usage_fn=lambda r: r.missing)
    assert run("topic words").output == "five words in this output"
    assert m.report()["w"]["consumed"] == 2 + 6  # usage_fn raised: estimate (2 words -> 2, 5 words -> 6)
    exact = tbc.govern_agent(m, "w", lambda: Out("x"), usage_fn=lambda r: 77)
    exact()
    assert m.report()["w"]["consumed"] == 85
    assert adapters.crewai_adapter.result_text(object()) is None
    with pytest.raises(tbc.UnknownAgentError):
        tbc.govern_agent(m, "ghost", lambda: "x")


def test_public_names_and_lazy_adapters() -> None:
    assert set(tbc.__all__) == set(ref.__all__)
    assert tbc.__version__ == "0.3.0"
    for name in ("govern_node", "TBCGraphGovernor", "govern_agent", "TBCCrewGovernor"):
        assert getattr(tbc, name) is getattr(adapters, name)
    with pytest.raises(AttributeError):
        tbc.nothing_here  # noqa: B018


def test_global_tracer_and_exceptions_recorded_on_spans() -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # once per process: a later call is ignored with a warning
    m = tbc.BudgetManager()
    assert m.enable_telemetry("tbc-layer-test") is True
    m.register_agent("g", max_tokens=100, confidence_threshold=0.5)
    m.record_usage("g", 1, confidence=0.7)

    @m.govern("g")
    def call(q: str) -> str:
        return "x"

    exporter.clear()
    with pytest.raises(tbc.BudgetExceededError):
        call("blocked")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    if not spans:  # another test in this process set the global provider first
        pytest.skip("the global tracer provider was already set by another test")
    assert dict(spans["tbc.confidence_gate_block"].attributes or {}) == {
        "tbc.agent": "g", "tbc.confidence": 0.7, "tbc.threshold": 0.5}
    gov = spans["tbc.govern_call"]
    assert (gov.attributes or {}).get("tbc.gate_blocked") is True
    assert [e.name for e in gov.events] == ["exception"]

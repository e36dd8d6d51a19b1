"""Battery, class "SDK arguments": the emitter API (``ledger.Emitter``) refuses bad arguments.

Each case calls one SDK method with one bad argument and asserts a ``ValidationError`` (also a
``ValueError``) whose ``field`` is the argument's name and whose ``value`` is the offending value,
that nothing was buffered (no pending event, the chain head did not move) and that no topic of the
log grew. One home and one emitter serve the module: a refusal changes neither.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger import Emitter
from ledger.errors import HomeError, KeyFileError, LedgerError, ValidationError
from ledger.sdk.home import Home
from ledger.testing.homes import T0, make_home
from ledger.wire.events import Action, Context, Flow

from .support import log_records

Call = Callable[[Emitter], Any]


def _interaction(**over: Any) -> Call:
    kw: dict[str, Any] = dict(responder_id="bob", interaction_id="i1", requestor_provider="p", requestor_model="m",
                              responder_provider="p", responder_model="m", request_tokens=10, response_tokens=10)
    kw.update(over)
    return lambda em: em.interaction(**kw)


NAN = math.nan
# (call, field named, offending value; None: the value is None itself or not a simple value to compare)
CASES: list[Any] = [
    # action
    pytest.param(lambda em: em.action("x", cost_weight=NAN), "cost_weight", NAN, id="cost-weight-nan"),
    pytest.param(lambda em: em.action("x", cost_weight=math.inf), "cost_weight", math.inf, id="cost-weight-inf"),
    pytest.param(lambda em: em.action("x", cost_weight="1.0001"), "cost_weight", "1.0001", id="cost-weight-precise"),
    pytest.param(lambda em: em.action("x", cost_weight=-1), "cost_weight_milli", -1000, id="cost-weight-negative"),
    pytest.param(lambda em: em.action("x", cost_weight="heavy"), "cost_weight", "heavy", id="cost-weight-text"),
    pytest.param(lambda em: em.action(None), "operation", None, id="operation-none"),
    pytest.param(lambda em: em.action(5), "operation", 5, id="operation-int"),
    pytest.param(lambda em: em.action(""), "operation", "", id="operation-empty"),
    pytest.param(lambda em: em.action("x" * 5000), "operation", None, id="operation-too-long"),
    pytest.param(lambda em: em.action("x", provider="anthropic", model="m", input_tokens=-5), "usage.input_tokens",
                 -5, id="input-tokens-negative"),
    pytest.param(lambda em: em.action("x", provider="anthropic", model="m", input_tokens=1.5), "usage.input_tokens",
                 1.5, id="input-tokens-float"),
    pytest.param(lambda em: em.action("x", provider="anthropic", model="m", output_tokens=True),
                 "usage.output_tokens", True, id="output-tokens-bool"),
    pytest.param(lambda em: em.action("x", provider="anthropic", model="m", output_tokens=10**13),
                 "usage.output_tokens", 10**13, id="output-tokens-huge"),
    pytest.param(lambda em: em.action("x", provider="anthropic", model="m", input_tokens=10, cache_read_tokens=11),
                 "usage.cache_read_tokens", 11, id="cache-read-above-input"),
    pytest.param(lambda em: em.action("x", input_tokens=5), "provider", None, id="tokens-without-model"),
    pytest.param(lambda em: em.action("x", provider="", model="m"), "usage.provider", "", id="provider-empty"),
    pytest.param(lambda em: em.action("x", provider="p"), "usage.model", None, id="model-missing"),
    # data, compute
    pytest.param(lambda em: em.data(bytes_read=10**16), "bytes_read", 10**16, id="bytes-read-huge"),
    pytest.param(lambda em: em.data(bytes_read=-1), "bytes_read", -1, id="bytes-read-negative"),
    pytest.param(lambda em: em.data(bytes_written=True), "bytes_written", True, id="bytes-written-bool"),
    pytest.param(lambda em: em.data(duration_us="12"), "duration_us", "12", id="duration-str"),
    pytest.param(lambda em: em.compute(node_id="n", cpu_time_slices=1, parallel_jobs=0), "parallel_jobs", 0,
                 id="parallel-jobs-zero"),
    pytest.param(lambda em: em.compute(node_id="n", cpu_time_slices=-1), "cpu_time_slices", -1,
                 id="cpu-slices-negative"),
    pytest.param(lambda em: em.compute(node_id="", cpu_time_slices=1), "node_id", "", id="node-id-empty"),
    # trust
    pytest.param(lambda em: em.trust("bob", "charisma", 1), "dimension", "charisma", id="trust-dimension"),
    pytest.param(lambda em: em.trust("bob", "accuracy", NAN), "value", NAN, id="trust-value-nan"),
    pytest.param(lambda em: em.trust("bob", "accuracy", "lots"), "value", "lots", id="trust-value-text"),
    pytest.param(lambda em: em.trust("bob", "accuracy", 10**12), "value_milli", 10**15, id="trust-value-huge"),
    pytest.param(lambda em: em.trust("bob", "accuracy", 1, half_life_us=-5), "half_life_us", -5,
                 id="trust-half-life-negative"),
    pytest.param(lambda em: em.trust("", "accuracy", 1), "subject_id", "", id="trust-subject-empty"),
    # interaction
    pytest.param(_interaction(responder_id="alice"), "responder_id", "alice", id="interaction-with-itself"),
    pytest.param(_interaction(response_tokens=None), "response_output", None, id="interaction-flows-missing"),
    pytest.param(_interaction(request_tokens=-1), "flow.tokens", -1, id="interaction-tokens-negative"),
    pytest.param(_interaction(request_cached_tokens=11), "flow.cached_tokens", 11, id="interaction-cached-above"),
    pytest.param(_interaction(request_tokens=None, response_tokens=None, request_output=Flow(1),
                              request_input=Flow(1), response_output=Flow(1), response_input="lots"),
                 "response_input", "lots", id="interaction-flow-not-a-flow"),
    pytest.param(_interaction(interaction_id=""), "interaction_id", "", id="interaction-id-empty"),
    # reservations and advisory checks
    pytest.param(lambda em: em.reserve("r1", "action", -1), "amount", -1, id="reserve-amount-negative"),
    pytest.param(lambda em: em.reserve("r1", "gold", 1), "budget_kind", "gold", id="reserve-kind"),
    pytest.param(lambda em: em.reserve("r1", "action", 1, ttl_us=0), "ttl_us", 0, id="reserve-ttl-zero"),
    pytest.param(lambda em: em.reserve("", "action", 1), "reservation_id", "", id="reserve-id-empty"),
    pytest.param(lambda em: em.reserve("r1", "action", 1, scope="galaxy"), "scope", "galaxy", id="reserve-scope"),
    pytest.param(lambda em: em.commit("r1", "action", 1.5), "amount", 1.5, id="commit-amount-float"),
    pytest.param(lambda em: em.commit("r1", "gold", 1), "budget_kind", "gold", id="commit-kind"),
    pytest.param(lambda em: em.release("", "action"), "reservation_id", "", id="release-id-empty"),
    pytest.param(lambda em: em.check("gold", 1), "kind", "gold", id="check-kind"),
    pytest.param(lambda em: em.check("action", -1), "amount", -1, id="check-amount-negative"),
    # emit itself: body, time, context, idempotency key
    pytest.param(lambda em: em.emit("not a body"), "body", "not a body", id="emit-not-a-body"),
    pytest.param(lambda em: em.emit(Action("x"), event_time_us=0), "event_time_us", 0, id="time-zero"),
    pytest.param(lambda em: em.emit(Action("x"), event_time_us=float(T0)), "event_time_us", float(T0),
                 id="time-float"),
    pytest.param(lambda em: em.emit(Action("x"), event_time_us=True), "event_time_us", True, id="time-bool"),
    pytest.param(lambda em: em.emit(Action("x"), event_time_us=str(T0)), "event_time_us", str(T0), id="time-str"),
    pytest.param(lambda em: em.emit(Action("x"), event_time_us=T0 * 1000), "event_time_us", T0 * 1000,
                 id="time-nanoseconds"),
    pytest.param(lambda em: em.emit(Action("x"), event_time_us=T0, context={"org": "o"}), "context", None,
                 id="context-not-a-context"),
    pytest.param(lambda em: em.emit(Action("x"), event_time_us=T0,
                                    context=Context(labels={f"k{i}": "v" for i in range(65)})),
                 "context.labels", 65, id="context-too-many-labels"),
    pytest.param(lambda em: em.emit(Action("x"), event_time_us=T0, context=Context(labels={"k": "v" * 5000})),
                 "context.labels[k]", None, id="context-label-too-long"),
    pytest.param(lambda em: em.emit(Action("x"), event_time_us=T0, idempotency_key="k" * 5000), "idempotency_key",
                 None, id="idempotency-key-too-long"),
    pytest.param(lambda em: em.emit(Action("x"), event_time_us=T0, idempotency_key=5), "idempotency_key", 5,
                 id="idempotency-key-int"),
    pytest.param(lambda em: em.emit(Action("x"), event_time_us=T0, idempotency_key="k\x00"), "idempotency_key",
                 "k\x00", id="idempotency-key-nul"),
]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    return make_home(tmp_path_factory.mktemp("battery-sdk") / "home", agents=("alice", "bob"))


@pytest.fixture(scope="module")
def em(home: Home) -> Iterator[Emitter]:
    with Emitter.open("alice", home=home.path, background_flush=False) as e:
        yield e


def _same(a: Any, b: Any) -> bool:
    return (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or (
        a == b and type(a) is type(b))


@pytest.mark.parametrize("call,field,value", CASES)
def test_bad_argument_is_a_validation_error_naming_field_and_value(home: Home, em: Emitter, call: Call, field: str,
                                                                   value: Any) -> None:
    before = log_records(home)
    head = em.head
    with pytest.raises(ValidationError) as e:
        call(em)
    assert e.value.field == field, e.value
    assert field in str(e.value)
    if value is not None:
        assert _same(e.value.value, value), (e.value.value, value)
    assert isinstance(e.value, ValueError)  # code written against the standard library catches it too
    assert em.stats().pending == 0 and em.head == head
    em.flush()  # nothing was buffered, so nothing reaches the log
    assert log_records(home) == before


@pytest.mark.parametrize("agent,options,error,field", [
    pytest.param("alice", dict(batch_size=0), ValidationError, "batch_size", id="batch-size-zero"),
    pytest.param("alice", dict(batch_size=10**6), ValidationError, "batch_size", id="batch-size-huge"),
    pytest.param("alice", dict(batch_size="8"), ValidationError, "batch_size", id="batch-size-str"),
    pytest.param("alice", dict(linger_ms=-1), ValidationError, "linger_ms", id="linger-negative"),
    pytest.param("alice", dict(linger_ms=NAN), ValidationError, "linger_ms", id="linger-nan"),
    pytest.param("alice", dict(control_topic="x", anchors=None), ValidationError, "control_topic",
                 id="control-topic-without-anchors"),
    pytest.param("b\nob", {}, ValidationError, "agent_id", id="agent-newline"),
    pytest.param("[/bold]", {}, ValidationError, "agent_id", id="agent-rich-markup"),
    pytest.param("nobody", {}, KeyFileError, None, id="agent-without-key"),
])
def test_bad_open_arguments_are_refused_before_anything_is_opened(home: Home, agent: str, options: dict[str, Any],
                                                                   error: type[LedgerError], field: str | None) -> None:
    before = log_records(home)
    with pytest.raises(error) as e:
        Emitter.open(agent, home=home.path, **options)
    if field is not None:
        assert e.value.evidence["field"] == field
    assert log_records(home) == before


def test_a_home_that_does_not_exist_is_a_home_error(tmp_path: Path) -> None:
    with pytest.raises(HomeError) as e:
        Emitter.open("alice", home=tmp_path / "nope")
    assert e.value.evidence["path"] == str(tmp_path / "nope")
    assert not (tmp_path / "nope").exists()  # refusing created nothing

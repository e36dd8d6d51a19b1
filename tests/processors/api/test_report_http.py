"""``GET /report`` over real HTTP: the page ``tokenledger report --html`` writes, narrowed by ``from`` / ``to`` /
``agent`` / ``model`` / ``project`` (the numbers on it change with them), rendered in headless Chromium under the
Content-Security-Policy the service sends, with no console error; every shown text escaped; an agent token sees only
its own agent.

The home: two agents' LLM calls on two priced models of our own, in two projects, and one call of a model whose id is
markup (unpriced); the processors publish everything before the service starts, so each page is a fixed function of
the views (``build`` with the same filter gives the same page)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import httpx
import pytest
from support.chromium import render
from support.serving import control, problem

from ledger.sdk.emitter import Emitter
from ledger.testing.homes import T0, make_home
from ledger.units import US_PER_DAY
from ledger.units import US_PER_S as S
from ledger.wire.events import Context, PriceSet
from ledger.wire.timefmt import fmt_time
from processors.report.html import SECTIONS, render_html
from processors.report.model import build
from processors.report.svg import usd
from processors.testing.serve import running_service

MODEL_A, MODEL_B = ("openai", "test-mini-1"), ("anthropic", "test-small-1")
PRICED_FROM = T0 - US_PER_DAY
PRICES = [PriceSet(provider=MODEL_A[0], model=MODEL_A[1], input_micros_per_mtok=2_000_000,
                   output_micros_per_mtok=8_000_000, cache_read_micros_per_mtok=500_000,
                   cache_write_micros_per_mtok=2_500_000, effective_from_us=PRICED_FROM),
          PriceSet(provider=MODEL_B[0], model=MODEL_B[1], input_micros_per_mtok=1_000_000,
                   output_micros_per_mtok=5_000_000, cache_read_micros_per_mtok=100_000,
                   cache_write_micros_per_mtok=1_250_000, effective_from_us=PRICED_FROM)]
MARKUP_MODEL = '<script>alert("x")</script>&amp;'  # an id a provider could send: shown as text, never as markup
# (agent, time, (provider, model), project, input, output, micro-USD at 2/8 and 1/5 micro-USD per token)
CALLS = [
    ("alice", T0 + 1 * S, MODEL_A, "p1", 1_000, 200, 3_600),
    ("alice", T0 + 2 * S, MODEL_B, "p2", 3_000, 500, 5_500),
    ("bob", T0 + 3 * S, MODEL_A, "p2", 2_000, 100, 4_800),
    ("bob", T0 + 4 * S, ("acme", MARKUP_MODEL), "p2", 100, 10, None),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    h = make_home(tmp_path_factory.mktemp("report-http") / "home", agents=("alice", "bob"))
    control(h, [(p, PRICED_FROM) for p in PRICES])
    for agent in ("alice", "bob"):
        with Emitter.open(agent, home=h.path, background_flush=False) as em:
            for who, t, (provider, model), project, tin, tout, _ in CALLS:
                if who == agent:
                    em.action("llm.call", provider=provider, model=model, input_tokens=tin, output_tokens=tout,
                              event_time_us=t, context=Context(org="o", project=project, run="r1", stage="draft"))
    subprocess.run([sys.executable, "-m", "processors.cli", "run", "journal", "allocations", "budgets",
                    "--until-caught-up", "--home", str(h.path)], check=True, capture_output=True, timeout=300)
    with running_service(h.path) as s:
        s.h = h  # type: ignore[attr-defined]
        yield s


def _page(served, token=None, **params) -> httpx.Response:
    return httpx.get(served.url + "/report", params=params, headers=served.auth(token), timeout=120)


def _cards(page: str) -> dict[str, str]:
    """The page's summary cards: label -> value as shown."""
    return {label: value for value, label in re.findall(r'<div class="card"><b>(.*?)</b><span>(.*?)</span>', page)}


def test_the_page_is_the_report_with_its_security_headers(served):
    r = _page(served)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "style-src 'sha256-" in csp and "script" not in csp
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["cache-control"] == "no-store"
    fresh = json.loads(r.headers["x-tokenledger-freshness"])  # the views it read: these three published, not notary
    assert all(fresh[p]["age_s"] >= 0 for p in ("journal", "allocations", "budgets"))
    assert fresh["notary"] == {"published_at": None, "age_s": None}
    # the renderer of `tokenledger report --html`, over the same views; the home named, not its path
    assert r.text == render_html({**build(served.h), "home": served.h.path.name})
    assert str(served.h.path) not in r.text
    cards = _cards(r.text)
    assert cards["LLM cost"] == usd(3_600 + 5_500 + 4_800) and cards["LLM calls"] == "4"
    assert cards["unpriced calls"] == "1"
    # the markup in a model id is text on the page
    assert MARKUP_MODEL not in r.text and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;amp;" in r.text


@pytest.mark.parametrize(("params", "calls", "micros"), [
    ({"agent": "alice"}, 2, 3_600 + 5_500),
    ({"agent": "bob"}, 2, 4_800),
    ({"model": MODEL_A[1]}, 2, 3_600 + 4_800),
    ({"project": "p1"}, 1, 3_600),
    ({"project": "p2", "agent": "alice"}, 1, 5_500),
    ({"from": fmt_time(T0 + S * 3 // 2), "to": fmt_time(T0 + S * 7 // 2)}, 2, 5_500 + 4_800),  # from inclusive, to exclusive
    ({"from": fmt_time(T0 + 2 * S), "to": fmt_time(T0 + 3 * S)}, 1, 5_500),
    ({"to": fmt_time(T0)}, 0, 0),
])
def test_filters_change_the_numbers(served, params, calls, micros):
    r = _page(served, **params)
    assert r.status_code == 200, r.text
    cards = _cards(r.text)
    assert (cards["LLM calls"], cards["LLM cost"]) == (str(calls), usd(micros))
    shown = [f"{k}={v}" for k, v in params.items()]
    assert all(s.split("=", 1)[0] + "=" in r.text for s in shown)  # the header says what the page covers


def test_an_agent_token_sees_only_its_own_agent(served):
    alice = served.token("alice", scopes=("read",))
    own = _page(served, alice)
    assert own.status_code == 200
    assert own.text == _page(served, agent="alice").text  # forced to its agent
    assert _cards(own.text)["LLM cost"] == usd(3_600 + 5_500)
    assert "bob" not in own.text
    problem(_page(served, alice, agent="bob"), 403, "forbidden_agent", "agent")
    problem(_page(served, served.token("alice", scopes=("ingest", "reserve"))), 403, "missing_scope")
    problem(httpx.get(served.url + "/report"), 401, "unauthorized")
    problem(httpx.get(served.url + "/report", params={"token": served.operator_token}), 401, "unauthorized")


@pytest.mark.parametrize(("params", "field"), [
    ({"from": "last week"}, "from"),
    ({"to": "2026-05-01T00:00:00"}, "to"),
    ({"from": fmt_time(T0 + S), "to": fmt_time(T0)}, "to"),
    ({"agent": "a\u202eb"}, "agent"),  # an invisible bidi override is no agent id
    ({"model": "x" * 300}, "model"),
])
def test_bad_filters_are_400s_naming_them(served, params, field):
    problem(_page(served, **params), 400, "invalid_field", field)


def _with_policy(page: str, csp: str) -> str:
    """The page as the browser applies it: the service's policy in force (a meta element carries it to a file;
    frame-ancestors works only as a header, so it is left out there: Chromium would say it ignores it)."""
    carried = "; ".join(d for d in csp.split("; ") if not d.startswith("frame-ancestors"))
    return page.replace("<head>", f'<head><meta http-equiv="Content-Security-Policy" content="{carried}">', 1)


def test_the_policy_detector_flags_what_the_policy_forbids(served, tmp_path):
    r = _page(served)
    bad = tmp_path / "bad.html"
    bad.write_text(_with_policy(r.text, r.headers["content-security-policy"]).replace(
        "<main>", '<main><p style="color:red">styled inline</p>', 1))
    _, console = render(bad, tmp_path)
    assert any("Content Security Policy" in ln for ln in console), console


@pytest.mark.parametrize("params", [{}, {"agent": "bob", "model": MARKUP_MODEL}])
def test_the_page_renders_in_chromium_under_its_policy_without_console_errors(served, tmp_path, params):
    r = _page(served, **params)
    assert r.status_code == 200, r.text
    page = tmp_path / "report.html"
    page.write_text(_with_policy(r.text, r.headers["content-security-policy"]))
    dom, console = render(page, tmp_path)
    assert console == []
    for title in SECTIONS:
        assert title in dom
    assert "<script" not in dom.lower()  # the markup model id stayed text
    if params:
        assert _cards(dom)["LLM calls"] == "1" and _cards(dom)["unpriced calls"] == "1"
        assert "&lt;script&gt;" in dom
    else:
        assert dom.count("<svg") >= len(SECTIONS) and "<rect" in dom

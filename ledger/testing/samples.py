"""Telemetry sample builders: workflow runs (the reference meter's sample run shape), OpenAI and Anthropic
payloads, OTel GenAI spans. Shared by the importer and report tests and the import benchmark."""

from __future__ import annotations

import json
from typing import Any

from ledger.testing.homes import T0

T0_S = T0 // 1_000_000  # seconds, as OpenAI's "created"

def phase(title: str) -> dict[str, Any]:
    return {"type": "workflow_phase", "phaseTitle": title}


def agent(agent_id: str, stage: str, model: str, tokens: Any, state: str = "completed",
          tool_calls: Any = 3, label: str = "worker") -> dict[str, Any]:
    return {"type": "workflow_agent", "agentId": agent_id, "label": label, "phaseTitle": stage, "model": model,
            "state": state, "tokens": tokens, "toolCalls": tool_calls}


def wf_doc(run_id: str, entries: list[dict[str, Any]], *, total: int | None = None, status: str = "completed",
           workflow: str = "deep-research") -> dict[str, Any]:
    if total is None:
        total = sum(e["tokens"] for e in entries if e.get("type") == "workflow_agent")
    return {"runId": run_id, "workflowName": workflow, "status": status, "totalTokens": total,
            "workflowProgress": entries}


def even_split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + 1] * extra + [base] * (parts - extra)


def sample_run_doc() -> dict[str, Any]:
    """The reference meter's synthetic sample run, rebuilt from SEEDS.md §3.5's figures: 19 agents,
    1,006,200 tokens; Scope 31,204 (1 haiku agent), Search 254,248 (6 haiku), Verify 720,748 (12 sonnet)."""
    entries = [phase("Scope"), agent("scope-1", "Scope", "claude-haiku-4-5", 31_204, label="scope")]
    entries.append(phase("Search"))
    entries += [agent(f"search-{i}", "Search", "claude-haiku-4-5", t, label="search")
                for i, t in enumerate(even_split(254_248, 6))]
    entries.append(phase("Verify"))
    entries += [agent(f"verify-{i}", "Verify", "claude-sonnet-4-6", t, label="verify")
                for i, t in enumerate(even_split(720_748, 12))]
    return wf_doc("wf_sample-001", entries, status="completed", workflow="sample-research")


def degraded_run_doc() -> dict[str, Any]:
    """Reports "completed" while every verifier errored cheaply (the reference's motivating case)."""
    entries = [phase("Fetch")] + [agent(f"f{i}", "Fetch", "claude-sonnet-4-6", 40_000 + i) for i in range(6)]
    entries += [phase("Verify")] + [agent(f"v{i}", "Verify", "claude-opus-4-6", 1_588, state="error")
                                    for i in range(8)]
    entries += [phase("Report"), agent("r0", "Report", "claude-opus-4-6", 52_000)]
    return wf_doc("wf_degraded-002", entries)


def openai_payload(i: int, prompt: Any = 1_000, completion: Any = 200, *, cached: Any = None,
                   reasoning: Any = None, model: Any = "gpt-4.1", created: Any = None) -> dict[str, Any]:
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion}
    if isinstance(prompt, int) and isinstance(completion, int) and not isinstance(prompt, bool):
        usage["total_tokens"] = prompt + completion
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached, "audio_tokens": 0}
    if reasoning is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning, "audio_tokens": 0}
    out = {"id": f"chatcmpl-{i:06d}", "object": "chat.completion", "created": T0_S + i if created is None else created,
           "model": model, "choices": [], "usage": usage}
    if model is None:
        del out["model"]
    return out


def anthropic_payload(i: int, input_tokens: Any = 100, output_tokens: Any = 50, *, written: Any = 0,
                      read: Any = 0, model: str = "claude-sonnet-4-6") -> dict[str, Any]:
    return {"id": f"msg_{i:06d}", "type": "message", "role": "assistant", "model": model, "content": [],
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                      "cache_creation_input_tokens": written, "cache_read_input_tokens": read}}


def otlp_attrs(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    """Attributes in OTLP/JSON form: ints as decimal strings in intValue, as protobuf's JSON mapping writes them."""
    out = []
    for key, value in attrs.items():
        v: dict[str, Any]  # one OTLP AnyValue: {"<type>Value": value}
        if isinstance(value, bool):
            v = {"boolValue": value}
        elif isinstance(value, int):
            v = {"intValue": str(value)}
        elif isinstance(value, float):
            v = {"doubleValue": value}
        else:
            v = {"stringValue": value}
        out.append({"key": key, "value": v})
    return out


def genai_span(i: int, *, otlp: bool = False, **attrs: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                            "gen_ai.request.model": "gpt-4.1", "gen_ai.response.model": "gpt-4.1-2025-04-14",
                            "gen_ai.usage.input_tokens": 1_200, "gen_ai.usage.output_tokens": 300}
    base.update({k.replace("__", "."): v for k, v in attrs.items()})
    base = {k: v for k, v in base.items() if v is not None}
    return {"traceId": f"{i:032x}", "spanId": f"{i + 1:016x}", "name": "chat gpt-4.1",
            "startTimeUnixNano": str(T0 * 1000 + i * 1_000_000 + 999), "endTimeUnixNano": str(T0 * 1000 + 5),
            "attributes": otlp_attrs(base) if otlp else base}


def jsonl(records: list[Any]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


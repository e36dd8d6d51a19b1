"""tbcontracts' optional OpenTelemetry spans: ``TelemetryRecorder``.

Spans are named ``tbc.<event>``: ``tbc.register_agent`` {tbc.agent, tbc.priority, tbc.max_tokens},
``tbc.record_usage`` {tbc.agent, tbc.tokens_used, tbc.note}, ``tbc.govern_call`` {tbc.agent, tbc.function,
tbc.tokens_used, tbc.gate_blocked}, ``tbc.reallocate`` {tbc.needy_agent, tbc.donor_agent, tbc.tokens_moved,
tbc.shortfall}, ``tbc.confidence_gate_block`` {tbc.agent, tbc.confidence, tbc.threshold}. An exception raised inside
a span is recorded on it and re-raised. Telemetry never changes a decision; without OpenTelemetry installed (or
without a tracer) every call is a no-op. The ledger's own record of the same facts is its signed log.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator, Mapping
from typing import Any


def _otel_available() -> bool:
    """Whether the OpenTelemetry API is importable (looked up, not imported)."""
    return importlib.util.find_spec("opentelemetry") is not None


class _NullSpan:
    """A span that records nothing (telemetry off)."""

    def set_attribute(self, key: str, value: Any) -> None:
        """Recorded nowhere: telemetry is off."""

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        """Recorded nowhere: telemetry is off."""

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        """Recorded nowhere: telemetry is off."""

    def record_exception(self, exception: BaseException) -> None:
        """Recorded nowhere: the exception still propagates."""

    def set_status(self, *args: Any, **kwargs: Any) -> None:
        """Recorded nowhere: telemetry is off."""

    def __enter__(self) -> _NullSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class TelemetryRecorder:
    """Spans through an OpenTelemetry tracer, or nothing (``disabled()``)."""

    def __init__(self, tracer: Any = None, enabled: bool = False) -> None:
        self._tracer = tracer
        self._enabled = bool(enabled and tracer is not None)

    @classmethod
    def disabled(cls) -> TelemetryRecorder:
        return cls(None, enabled=False)

    @classmethod
    def from_global(cls, service_name: str = "tbcontracts") -> TelemetryRecorder:
        """A recorder on the global tracer provider's tracer; disabled when OpenTelemetry is not importable."""
        if not _otel_available():
            return cls.disabled()
        from opentelemetry import trace  # optional dependency, present (checked above)

        return cls(trace.get_tracer(service_name), enabled=True)

    @property
    def enabled(self) -> bool:
        return self._enabled

    @contextlib.contextmanager
    def span(self, name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Any]:
        """A span named ``name`` with ``attributes`` (a no-op span when disabled); exceptions are recorded on it and
        re-raised."""
        if not self._enabled:
            yield _NullSpan()
            return
        with self._tracer.start_as_current_span(name, record_exception=False, set_status_on_exception=True) as span:
            for key, value in (attributes or {}).items():
                span.set_attribute(key, value)
            try:
                yield span
            except BaseException as e:
                span.record_exception(e)
                raise

    def event_register(self, agent_name: str, priority: int, max_tokens: int) -> None:
        with self.span("tbc.register_agent", {"tbc.agent": agent_name, "tbc.priority": priority,
                                              "tbc.max_tokens": max_tokens}):
            return  # an instant span: its attributes are the record

    def event_reallocation(self, needy_agent: str, donor_agent: str, tokens_moved: int, shortfall: int) -> None:
        with self.span("tbc.reallocate", {"tbc.needy_agent": needy_agent, "tbc.donor_agent": donor_agent,
                                          "tbc.tokens_moved": tokens_moved, "tbc.shortfall": shortfall}):
            return  # an instant span: its attributes are the record

    def event_gate_block(self, agent_name: str, confidence: float, threshold: float) -> None:
        with self.span("tbc.confidence_gate_block", {"tbc.agent": agent_name, "tbc.confidence": confidence,
                                                     "tbc.threshold": threshold}):
            return  # an instant span: its attributes are the record

"""CWEP congestion pricing, QoS tiers and back-pressure over ``ledger.economics.econ`` (money exact in micro-USD,
shown as float USD; utilisation must be a finite number >= 0, above 1 counted as 1; unknown tiers are refused)."""

from __future__ import annotations

from typing import Any

from ledger.economics import econ
from ledger.economics.money import exact_number
from ledger.errors import ValidationError

from . import _units
from .schema import PROTOCOL_OVERHEAD_TOKENS, BackPressureSignal, QoSConfig, QoSTier


def congestion_multiplier(utilization: float) -> float:
    return float(econ.congestion_multiplier(utilization))


def congestion_level(utilization: float) -> str:
    return econ.congestion_level(utilization).value


def effective_token_price(base_rate_per_mtok: float, tokens: int, utilization: float = 0.0,
                          overhead_tokens: int = PROTOCOL_OVERHEAD_TOKENS,
                          qos_tier: str = QoSTier.STANDARD.value) -> dict[str, Any]:
    """{btc, cp, po, total} in USD (base with QoS, congestion premium, protocol overhead) and both multipliers."""
    p = econ.effective_token_price(base_rate=_units.rate_micros("base_rate_per_mtok", base_rate_per_mtok),
                                   tokens=tokens, utilization=utilization, overhead_tokens=overhead_tokens,
                                   qos_tier=qos_tier)
    return {"btc": _units.usd(p.base_cost), "cp": _units.usd(p.congestion_premium),
            "po": _units.usd(p.protocol_overhead), "total": _units.usd(p.total),
            "congestion_multiplier": float(p.congestion_multiplier), "qos_multiplier": float(p.qos_multiplier)}


def position_multiplier(position: int, window_size: int, beta: float = 0.3) -> float:
    return econ.position_multiplier(position=position, window_size=window_size, beta=beta)


def qos_config_for_tier(tier: str) -> QoSConfig:
    c = econ.qos_config_for_tier(tier)
    return QoSConfig(tier=c.tier.value, input_tokens_per_minute=c.input_tokens_per_minute,
                     output_tokens_per_minute=c.output_tokens_per_minute,
                     concurrent_interactions=c.concurrent_interactions,
                     max_request_size_tokens=c.max_request_size_tokens,
                     max_context_utilization=float(c.max_context_utilization))


def check_qos_limits(config: QoSConfig, request_tokens: int, current_utilization: float) -> dict[str, bool]:
    """{size_ok, utilization_ok, allowed} against the config's request size and utilisation limits."""
    if not isinstance(config, QoSConfig):
        raise ValidationError("config", config, "must be a QoSConfig")
    core = econ.QoSConfig(tier=econ.QoSTier(econ.qos_config_for_tier(config.tier).tier),
                          input_tokens_per_minute=config.input_tokens_per_minute,
                          output_tokens_per_minute=config.output_tokens_per_minute,
                          concurrent_interactions=config.concurrent_interactions,
                          max_request_size_tokens=_units.tokens("config.max_request_size_tokens",
                                                                config.max_request_size_tokens),
                          max_context_utilization=exact_number("config.max_context_utilization",
                                                               config.max_context_utilization, minimum=0))
    check = econ.check_qos_limits(core, request_tokens=request_tokens, current_utilization=current_utilization)
    return {"size_ok": check.size_ok, "utilization_ok": check.utilization_ok, "allowed": check.allowed}


def generate_back_pressure(utilization: float, queue_depth: int = 0, estimated_queue_ms: int = 0) -> BackPressureSignal:
    s = econ.back_pressure(utilization, queue_depth=queue_depth, estimated_queue_ms=estimated_queue_ms)
    return BackPressureSignal(cwep_status=s.status.value, current_utilization=s.current_utilization,
                              estimated_queue_time_ms=s.estimated_queue_ms,
                              available_tiers=[t.value for t in s.available_tiers],
                              economy_queue_depth=s.economy_queue_depth)

"""``tokenledger serve``: the ledger's front door over HTTP (FastAPI on uvicorn).

One module per noun: ``app`` (composition, error mapping), ``state`` (the per-process service), ``auth`` (tokens,
scopes, rate limits), ``problems`` (RFC 9457 errors), ``metrics`` and ``ops`` (health, readiness, Prometheus), and one
module per feature: ``batches``, ``events``, ``traces``, ``budgets``, ``report``.
"""

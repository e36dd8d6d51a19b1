"""Drop-in layers for three reference packages, backed by the ledger: ``cwep`` (context-window-economics),
``tbc`` (token-budget-contracts, imported as ``tbcontracts``), ``acat`` (agent-cost-attribution).

Each exposes the public names and submodules of its package, so code written for the package runs unchanged when its
module name is aliased to the layer (``sys.modules["tbcontracts"] = ledger.compat.tbc``, or the import hook
``scripts/peer_suites.py`` uses). Each layer's docstring lists every documented deviation from the reference
behaviour and the reason.
"""

"""The engine every processor runs on: what a processor is (processor.py), the batch loop (runner.py),
its DuckDB state (store.py) and publishing (publish.py). It sits below the six processors, so it never
imports them or the registry; running processors by name is ``processors.host``.
"""

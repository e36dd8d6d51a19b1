"""Running named processors: the layer that knows the processors by name (through ``processors.REGISTRY``).

    service.py      run one processor in this process against a ledger home (state file, key, status, digest, replay)
    worker.py       ``python -m processors.host.worker NAME``: one processor as its own OS process
    supervisor.py   start a worker per processor and restart the ones that die
    catalog.py      the view catalog (processors/VIEWS.md) rendered from every processor's views

It sits above the six processors and below the application (services, cli). The engine it drives,
``processors.runtime``, sits below the processors and never learns their names.
"""

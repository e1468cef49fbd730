"""The experiment engine: how a run executes, for every model kind, in one place.

    spec(s) --expand--> graph of content-keyed jobs (graph.py)
            --schedule--> backend: serial | local process pool | Ray (backends.py)
            --execute--> the Task of the spec's model kind builds models / runs a method (execute.py, tasks/)
            --records--> the store (one record per (method, seed); jobs coordinated through the store, coord.py)
    progress: events.py; sweeps: sweep.py; tuning: tune.py; reports and plots: report.py.

Kept import-light (the training loop imports engine.events): the submodules import torch and the tasks lazily.
"""

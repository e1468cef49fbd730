"""The dashboard's view of a run's models: tasks.rebuild (shared with `unlearnlab audit`)."""
from __future__ import annotations

from ..tasks.rebuild import NotRebuildable, RunModels, rebuild, run_spec_of

NotAnalysable = NotRebuildable  # the views answer 409 for it

__all__ = ["NotAnalysable", "RunModels", "rebuild", "run_spec_of"]

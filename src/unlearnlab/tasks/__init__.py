"""What differs per model kind (classifier, causal LM; diffusion next): one engine Task per kind.

A Task plans the jobs of a spec (content keys of its models and run records), builds the original and the oracle,
runs a method and evaluates it, and measures the two-oracle noise floor. The engine (unlearnlab.engine) does the
rest the same way for every kind.
"""
from __future__ import annotations

from .base import Plan, get_task

__all__ = ["Plan", "get_task"]

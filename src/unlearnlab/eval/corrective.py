"""Corrective-unlearning metrics (Goel et al., "Corrective Machine Unlearning", TMLR 2024), computed only when a
poison scenario adds its evaluation splits (data/poison.py): 'poisoned', 'attack' and 'attack_target'."""
from __future__ import annotations

from .metrics import accuracy, metric
from .outputs import Outputs


@metric("Poison-Acc", needs=("poisoned",), higher_is_better=True,
        description="accuracy on every manipulated train row (known or not) w.r.t. its true label")
def poison_acc(out: Outputs, ref: Outputs | None = None) -> float:
    """Clean-label accuracy on the poisoned samples."""
    return accuracy(out["poisoned"])


@metric("Corrected-Acc", needs=("attack",), higher_is_better=True,
        description="accuracy on attack inputs (every test image with the trigger, or the test images of the "
                    "swapped classes) w.r.t. their true labels (the bench's corrected accuracy)")
def corrected_acc(out: Outputs, ref: Outputs | None = None) -> float:
    """Accuracy on attack inputs w.r.t. their true labels."""
    return accuracy(out["attack"])


@metric("ASR", needs=("attack_target",), higher_is_better=False,
        description="attack success rate: attack inputs predicted as the manipulation's label (the patch target, or "
                    "the other class of the swapped pair)")
def asr(out: Outputs, ref: Outputs | None = None) -> float:
    """Percentage of attack inputs classified as the manipulated label."""
    return accuracy(out["attack_target"])

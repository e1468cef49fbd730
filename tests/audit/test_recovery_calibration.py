"""The recovery attacks' learning rate: calibrated on the original and the oracle only, strongest first."""
import pytest

from unlearnlab.eval.model_audits import KEEP, LR_STEPS, calibrate


def fake_attack(role: str, lr: float) -> float:
    """Original forgets under strong attacks, the oracle relearns: their gap shrinks as lr grows."""
    return 90.0 - 100 * lr if role == "original" else 10.0 + 300 * lr


def test_picks_the_strongest_lr_that_keeps_half_the_gap():
    before = {"original": 90.0, "oracle": 10.0}
    cal = calibrate(fake_attack, before, base_lr=1.0)
    # gap after = 80 - 400 lr >= 40  <=>  lr <= 0.1: steps 1 and 0.316 fail, 0.1 is the first that holds
    assert cal["lr"] == pytest.approx(0.1)
    assert [round(t["lr"], 4) for t in cal["trace"]] == [1.0, 0.3162, 0.1]
    assert cal["trace"][-1]["original"] - cal["trace"][-1]["oracle"] >= KEEP * 80
    assert cal["calibrated"] and "note" not in cal


def test_the_base_lr_scales_the_grid():
    cal = calibrate(fake_attack, {"original": 90.0, "oracle": 10.0}, base_lr=0.01)
    assert cal["lr"] == pytest.approx(0.01) and len(cal["trace"]) == 1


def test_a_given_lr_is_used_as_is():
    calls = []
    cal = calibrate(lambda r, lr: calls.append(r) or 0.0, {"original": 90.0, "oracle": 10.0}, 1.0, lr=0.05)
    assert cal == {"lr": 0.05, "calibrated": False, "trace": []} and calls == []


def test_no_separation_says_so_and_uses_the_weakest():
    cal = calibrate(lambda r, lr: 50.0, {"original": 50.0, "oracle": 50.0}, base_lr=1.0)
    assert cal["lr"] == pytest.approx(LR_STEPS[-1]) and "cannot show" in cal["note"]
    assert len(cal["trace"]) == len(LR_STEPS)


def test_head_features_take_one_row_per_example_when_the_head_runs_twice():
    """A test-time-augmenting model (FastCNN with tta) calls its head twice per batch; logits are scaled after it."""
    import torch
    from torch import nn

    from unlearnlab.data.core import ArrayDataset
    from unlearnlab.eval.model_audits import _features

    class TTA(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.head = nn.Linear(3, 4), nn.Linear(4, 2, bias=False)

        def forward(self, x):
            return (self.head(self.body(x)) + self.head(self.body(-x))) / 18

    torch.manual_seed(0)
    model = TTA()
    ds = ArrayDataset(torch.randn(700, 3), torch.randint(0, 2, (700,)))
    feats, ys = _features(model, ds, torch.device("cpu"))
    assert feats.shape == (700, 4) and torch.equal(ys, ds.y)
    assert torch.allclose(feats, model.body(ds.x).detach(), atol=1e-6)  # the un-flipped call's features

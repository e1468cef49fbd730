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

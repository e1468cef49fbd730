"""DoCo: the concept-preserving gradient surgery on hand-made vectors (exact values), the surgery-off ablation and
the retained-data preservation on the tiny trained DDPM (direction checks as tests/gen/test_methods_gen.py), and
what each option changes."""
from __future__ import annotations

import pytest
import torch

from unlearnlab.errors import ConfigError
from unlearnlab.methods import MethodContext, run_method
from unlearnlab.methods._diffusion_common import preserve_gradient

T = torch.tensor
FORGET, KEPT = 3, [0, 4, 6]  # as tests/gen/test_methods_gen.py
# test_methods_gen.py's doco settings (its shared direction check runs them with the defaults' surgery = code)
DOCO = {"iterations": 60, "warm_up": 20, "batch_size": 16, "lr": 3e-4, "dlr": 1e-3, "anchor_images": 64}


@pytest.mark.parametrize("form", ["project", "code"])
def test_surgery_leaves_non_conflicting_gradients_alone(form):
    g_u = T([1.0, 2.0, -1.0])
    for g_r in (T([1.0, 0.0, 0.0]), T([0.0, 0.0, 0.0]), T([2.0, -1.0, 0.0])):  # dot 1, 0, 0
        assert torch.equal(preserve_gradient(g_u, g_r, form), g_u)


def test_surgery_projects_out_the_conflict():
    # g_u . g_r = -2, ||g_r||^2 = 2: g_u + (2 / 2) g_r = [1, 1], orthogonal to g_r afterwards
    g_u, g_r = T([2.0, 0.0]), T([-1.0, 1.0])
    out = preserve_gradient(g_u, g_r, "project")
    assert torch.allclose(out, T([1.0, 1.0]))
    assert float(torch.dot(out, g_r)) == pytest.approx(0.0)
    assert torch.allclose(preserve_gradient(g_u, g_r, "project", scale=0.5), T([1.5, 0.5]))
    # works on weight-shaped tensors (flattened dot product)
    assert torch.allclose(preserve_gradient(g_u.view(1, 2), g_r.view(1, 2), "project"), T([[1.0, 1.0]]))


def test_code_form_is_the_projection_only_for_unit_gradients():
    # DoCo's adjust_gradient: g_u - cos(g_u, g_r) g_r / ||g_r||; cos = -1/sqrt(2), g_r/||g_r|| = [-1, 1]/sqrt(2)
    g_r = T([-1.0, 1.0])
    assert torch.allclose(preserve_gradient(T([1.0, 0.0]), g_r, "code"), T([0.5, 0.5]), atol=1e-6)  # = projection
    out = preserve_gradient(T([2.0, 0.0]), g_r, "code")
    assert torch.allclose(out, T([1.5, 0.5]), atol=1e-6)
    assert float(torch.dot(out, g_r)) == pytest.approx(-1.0, abs=1e-5)  # still conflicting: not the projection
    with pytest.raises(ValueError):
        preserve_gradient(T([2.0, 0.0]), g_r, "other")


@pytest.fixture(scope="module")
def before(trained_ddpm, class_accuracy):
    return class_accuracy(trained_ddpm, [FORGET, *KEPT])


# the ablation (surgery off: adversarial + 0.1 x prior loss) and the retained-data preservation (ours), at the
# settings of test_methods_gen.py's doco check (the retain variant forgets more slowly: learning rate doubled)
VARIANTS = {"no-surgery": {**DOCO, "surgery": "off"}, "retain": {**DOCO, "preserve": "retain", "lr": 6e-4}}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_forgets_and_keeps(variant, trained_ddpm, data3, gen_task, before, class_accuracy):
    ctx = MethodContext(seed=0)
    out = run_method("doco", trained_ddpm, data3, gen_task, VARIANTS[variant], ctx)
    after = class_accuracy(out, [FORGET, *KEPT])
    kept_before = sum(before[c] for c in KEPT) / len(KEPT)
    kept_after = sum(after[c] for c in KEPT) / len(KEPT)
    assert after[FORGET] <= 0.5 * before[FORGET], (variant, before, after)
    assert kept_after >= kept_before - 25, (variant, before, after)
    assert (ctx.info["doco_conflict_fraction"] > 0) == (variant != "no-surgery")


def changed(a, b) -> set[str]:
    return {n for (n, p), q in zip(a.named_parameters(), b.parameters()) if not torch.equal(p, q)}


def test_parameter_groups_and_anchor(trained_ddpm, data3, gen_task):
    over = {"iterations": 3, "warm_up": 1, "batch_size": 4, "anchor_images": 8, "lr": 1e-3}
    cross = changed(run_method("doco", trained_ddpm, data3, gen_task, over, MethodContext()), trained_ddpm)
    full = changed(run_method("doco", trained_ddpm, data3, gen_task, {**over, "parameter_group": "full-weight",
                                                                       "surgery": "project", "anchor": 7},
                              MethodContext()), trained_ddpm)
    assert cross and all("time_emb_proj" in n for n in cross)
    assert any("time_emb_proj" not in n for n in full) and not any(n.startswith("cond.") for n in full)


def test_same_seed_same_weights(trained_ddpm, data3, gen_task):
    over = {"iterations": 3, "warm_up": 1, "batch_size": 4, "anchor_images": 8}
    a = run_method("doco", trained_ddpm, data3, gen_task, over, MethodContext(seed=3))
    b = run_method("doco", trained_ddpm, data3, gen_task, over, MethodContext(seed=3))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("over", [{"iterations": 5, "warm_up": 5}, {"anchor": 3}, {"anchor": 10}])
def test_bad_settings_are_refused(over, trained_ddpm, data3, gen_task):
    with pytest.raises(ConfigError):
        run_method("doco", trained_ddpm, data3, gen_task, {"iterations": 2, "warm_up": 1, "anchor_images": 4, **over},
                   MethodContext())

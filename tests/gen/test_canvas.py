"""The two-factor (digit x style) diffusion set in the spirit of UnlearnCanvas: data, the compositional condition
table, per-factor judges, UA / IRA / CRA, style / object forget sets and one tiny engine run."""
from __future__ import annotations

from importlib.util import find_spec

import numpy as np
import pytest
import torch

from unlearnlab.errors import ConfigError
from unlearnlab.eval.gen_metrics import canvas_metrics, forgotten_factor, gap_metrics
from unlearnlab.tasks.diffusion import forget_classes
from unlearnlab.tasks.diffusion_canvas import Factors, canvas_bundle

F = Factors(tuple("0123456789"), ("plain", "negative", "thick", "stripes"))
SPEC = {"dataset": "digits-canvas-gen", "forget": "style:negative", "model": "ddpm:tiny,timesteps=50,factors=10x4",
        "methods": ["esd"], "recipe": {"epochs": 1, "batch_size": 128},
        "options": {"samples": 2, "sample_steps": 2, "size": 8, "grid": 4},
        "overrides": {"esd": {"iterations": 2, "ddim_steps": 3, "lr": 1e-3}}}


@pytest.fixture(scope="module")
def canvas8():
    from unlearnlab.tasks.diffusion_data import gen_bundle

    return gen_bundle("digits-canvas-gen", 8)


def test_every_digit_in_every_style_with_labels_object_times_k_plus_style(canvas8, bundle8):
    b, k, n = canvas8, 4, len(bundle8.train)
    assert b.name == "digits-canvas-gen8" and b.num_classes == 40 and b.classes[:2] == ["0/plain", "0/negative"]
    assert b.factors == F and b.train.x.shape == (k * n, 1, 8, 8) and len(b.test) == k * len(bundle8.test)
    x, y = b.train.x.view(n, k, 1, 8, 8), b.train.y.view(n, k)
    assert torch.equal(y // k, bundle8.train.y[:, None].expand(n, k))
    assert torch.equal(y % k, torch.arange(k).expand(n, k))
    assert torch.equal(x[:, 0], bundle8.train.x) and torch.allclose(x[:, 1], -bundle8.train.x)  # plain, negative
    assert (x[:, 2] >= x[:, 0]).all() and (x[:, 2] > x[:, 0]).any()  # thick: a dilation
    assert b.train.x.min() >= -1 and b.train.x.max() <= 1
    again = canvas_bundle("digits-canvas-gen", 8)
    assert torch.equal(again.train.x, b.train.x) and again.train.fingerprint() == b.train.fingerprint()
    two = canvas_bundle("digits-canvas-gen", 8, styles=("stripes", "plain"))
    assert two.num_classes == 20 and two.name == "digits-canvas-gen8-stripes-plain"
    assert torch.equal(two.train.x[1::2], bundle8.train.x) and two.train.y[:2].tolist() == [0, 1]
    with pytest.raises(ConfigError, match="distinct"):
        canvas_bundle("digits-canvas-gen", 8, styles=("plain", "blur"))


def test_factor_judges_read_the_real_test_images(canvas8):
    """Measured (one core): style judge 100.0%, object judge 96.5% on the real 8x8 test images (1,420 each)."""
    from unlearnlab.tasks.diffusion_judge import judge_for

    _, style_acc = judge_for(canvas8, torch.device("cpu"), factor="style")
    _, object_acc = judge_for(canvas8, torch.device("cpu"), factor="object")
    assert style_acc >= 98.0 and object_acc >= 92.0
    with pytest.raises(ValueError, match="canvas bundle"):
        judge_for(canvas8, torch.device("cpu"), factor="colour")


def test_ua_ira_cra_on_hand_made_judge_outputs():
    # 2 objects x 3 styles, 2 samples per condition: labels 0,0,1,1,...,5,5 (y = o * 3 + s)
    labels = np.repeat(np.arange(6), 2)
    obj, sty = labels // 3, labels % 3
    style_pred, obj_pred = sty.copy(), obj.copy()
    style_pred[[2, 3, 9]] = 0  # style 1: both samples of (0, 1) and one of (1, 1) judged style 0 -> 1/4 right
    style_pred[4] = 1  # style 2: one of 4 wrong -> 75%
    obj_pred[[0, 6]] = [1, 0]  # object errors on two style-0 samples -> object acc on styles 0, 2 = 6/8
    m, d = canvas_metrics(obj_pred, style_pred, labels, 2, 3, forget=[1, 4])  # forget style 1
    assert m == pytest.approx({"UA": 75.0, "IRA": (100 + 75) / 2, "CRA": 75.0})
    assert d["forgotten"] == {"factor": "style", "index": 1} and d["per_style_sample_acc"] == [100.0, 25.0, 75.0]
    assert d["style_judge_counts"][1] == [3, 1, 0] and d["samples_per_condition"] == [2] * 6
    m, d = canvas_metrics(obj_pred, style_pred, labels, 2, 3, forget=[0, 1, 2])  # forget object 0
    # UA: object acc on object 0 = 5/6; IRA: object 1 = 5/6; CRA: style acc on object 1's samples = 5/6
    assert m == pytest.approx({"UA": 100 - 500 / 6, "IRA": 500 / 6, "CRA": 500 / 6})
    assert d["forgotten"] == {"factor": "object", "index": 0}
    assert d["per_object_sample_acc"] == pytest.approx([500 / 6] * 2)
    gaps = gap_metrics(m, {"UA": 0.0, "IRA": 500 / 6, "CRA": 100.0})
    assert gaps["Avg.Gap"] == pytest.approx((100 / 6 + 0 + 100 / 6) / 3)
    with pytest.raises(ValueError, match="neither"):
        forgotten_factor([0, 4], 2, 3)


def test_forget_sets_are_sets_of_condition_labels():
    assert forget_classes("class:3", 10) == [3]
    assert forget_classes(" style:1", 40, F) == forget_classes("style:negative", 40, F) == list(range(1, 40, 4))
    assert forget_classes("object:2", 40, F) == [8, 9, 10, 11]
    for bad, needle in [("class:10", "0..9"), ("style:1", "class:K"), ("random:10%", "class:K"), ("class:-1", "0..9")]:
        with pytest.raises(ConfigError, match=needle):
            forget_classes(bad, 10)
    for bad, needle in [("style:4", "0..3"), ("style:blur", "plain, negative"), ("object:10", "0..9"),
                        ("class:3", "style:S"), ("object:", "0..9"), ("sample:5", "object:O")]:
        with pytest.raises(ConfigError, match=needle):
            forget_classes(bad, 40, F)


def test_compositional_condition_table():
    from unlearnlab.models.ddpm import FactorTable, build_ddpm, parse_ddpm

    assert parse_ddpm("ddpm:tiny,factors=10x4")["factors"] == (10, 4) and "factors" not in parse_ddpm("ddpm:tiny")
    m = build_ddpm("ddpm:tiny,factors=10x4", 40, 8)
    assert isinstance(m.cond, FactorTable) and m.cond.num_embeddings == 41 and m.null == 40
    y = torch.tensor([0, 7, 39, 40])
    want = m.cond.objects.weight[y[:3] // 4] + m.cond.styles.weight[y[:3] % 4]
    assert torch.allclose(m.condition(y)[:3], want) and torch.allclose(m.condition(y)[3], m.cond.null[0])
    assert torch.allclose(m.cond.weight[y], m.condition(y)) and m.cond.weight.shape == (41, 32)
    assert {k for k in m.state_dict() if k.startswith("cond.")} == {"cond.objects.weight", "cond.styles.weight",
                                                                     "cond.null"}
    assert [k for k in build_ddpm("ddpm:tiny", 10, 8).state_dict() if k.startswith("cond")] == ["cond.weight"]
    for bad, needle in [("ddpm:tiny,factors=10", "objects>x<styles"), ("ddpm:tiny,factors=0x4", "factors")]:
        with pytest.raises(ConfigError, match=needle):
            parse_ddpm(bad)
    with pytest.raises(ConfigError, match="40 conditions but the data has 10"):
        build_ddpm("ddpm:tiny,factors=10x4", 10, 8)


@pytest.mark.parametrize("changes, needle", [({"model": "ddpm:tiny,factors=4x10"}, "needs factors=10x4"),
                                             ({"dataset": "digits-gen", "forget": "class:3"}, "no factors field"),
                                             ({"forget": "style:9"}, "0..3"), ({"forget": "class:3"}, "style:S")])
def test_bad_canvas_specs_are_config_errors(changes, needle):
    from unlearnlab import api

    with pytest.raises(ConfigError, match=needle):
        api.run({**SPEC, **changes}, store=None, backend="serial")


def test_bad_forget_exits_2_from_the_cli(tmp_path):
    from typer.testing import CliRunner

    from unlearnlab.cli import app

    r = CliRunner().invoke(app, ["run", "--dataset", "digits-canvas-gen", "--forget", "object:12", "--results",
                                 str(tmp_path)])
    assert r.exit_code == 2 and "0..9" in r.output, r.output


def test_tiny_engine_run_reports_ua_ira_cra(tmp_path, canvas8):
    pytest.importorskip("PIL")
    from PIL import Image

    from unlearnlab import api
    from unlearnlab.spec import from_dict
    from unlearnlab.store import Store
    from unlearnlab.tasks.diffusion import _data

    _, data, labels = _data(from_dict(SPEC))
    assert labels == list(range(1, 40, 4)) and len(data.forget) == len(canvas8.train) // 4
    assert set((data.retain.y % 4).tolist()) == {0, 2, 3}  # the oracle never sees a negative image
    store = Store(tmp_path)
    res = api.run(SPEC, store=store, backend="serial")
    assert not res["errors"], res["errors"]
    recs = {r["spec"]["method"]: r for r in res["records"]}
    assert set(recs) == {"original", "retrain", "esd"}
    for r in recs.values():
        m = r["metrics"]
        assert {"UA", "IRA", "CRA", "FD", "FD_forget", "Avg.Gap"} <= set(m) and "RA" not in m
        assert m["judge_acc_real_style"] >= 98.0 and m["judge_acc_real_object"] >= 92.0
        assert r["details"]["forgotten"] == {"factor": "style", "index": 1}
        assert r["details"]["samples_per_condition"] == [2] * 40 and len(r["details"]["per_condition_fd"]) == 40
        png = store.artifact_path(r["artifacts"]["samples_png"])
        assert Image.open(png).size[1] == (4 * 9 + 1) * 4  # one grid row per style
    assert recs["retrain"]["metrics"]["Avg.Gap"] == 0.0 and recs["esd"]["timings"]["opt_steps"] == 2
    if find_spec("matplotlib") is not None:  # the report shows IRA / CRA and says how the grid is laid out
        md = api.report(store=store, out=tmp_path / "rep")["markdown"].read_text()
        assert "IRA" in md and "CRA" in md and "one row per style (plain, negative, thick, stripes)" in md


def test_attack_and_advunlearn_on_style_forgetting(tmp_path):
    """The prompt attack runs on two-factor forgetting (every forgotten condition attacked on its own images, ASR
    judged by the style judge), and AdvUnlearn forgets every condition of the style: it draws among all of them
    (was: only the first, the other nine counted as retained) and, with train_method cond, trains the factorised
    table's object / style rows (was refused)."""
    from unlearnlab import api
    from unlearnlab.store import Store

    spec = {**SPEC, "methods": ["advunlearn"], "options": {**SPEC["options"], "attack": True, "attack_steps": 2},
            "overrides": {"advunlearn": {"iterations": 12, "warmup_iter": 2, "attack_step": 1, "ddim_steps": 3,
                                         "lr": 1e-2}}}
    res = api.run(spec, store=Store(tmp_path), backend="serial")
    assert not res["errors"], res["errors"]
    recs = {r["spec"]["method"]: r for r in res["records"]}
    for r in recs.values():
        m = r["metrics"]
        assert 0 <= m["ASR_pre"] <= 100 and 0 <= m["ASR_post"] <= 100 and m["attack_s"] > 0, m
        # ASR is a mean over the 10 attacked conditions of 2 samples each: a multiple of 5
        assert m["ASR_pre"] % 5 == 0 and m["ASR_post"] % 5 == 0, m
    info = recs["advunlearn"]["method_info"]
    assert info["forgotten_conditions"] == 10 and info["attacked_conditions"] > 1, info
    assert info["advunlearn_trained_params"] == (10 + 4 + 1) * 4 * 8  # objects, styles, null rows (width 8)


def test_stand_in_labels_skip_every_forgotten_condition():
    """SalUn's relabelling target, SFD's override and DoCo's anchor on object forgetting: the next label of (3,
    plain) is (3, negative), forgotten too, so every forgotten condition maps to the next retained one, (4, plain);
    a random target is never forgotten; a single forgotten class keeps (c + 1) mod K."""
    from unlearnlab.methods.salun_gen import relabel_targets

    forget = F.of_object(3)  # labels 12..15
    y = torch.tensor(forget * 50)
    assert relabel_targets(torch.tensor(forget), 40, "next", torch.Generator(), forget).tolist() == [16] * 4
    r = relabel_targets(y, 40, "random", torch.Generator().manual_seed(0), forget)
    assert not set(r.tolist()) & set(forget) and len(set(r.tolist())) > 20
    style = F.of_style(2)  # thick: (o, thick) -> (o, stripes), as before
    assert relabel_targets(torch.tensor(style), 40, "next", torch.Generator(), style).tolist() == [s + 1 for s in style]
    assert relabel_targets(torch.tensor([3, 9]), 10, "next", torch.Generator(), [3]).tolist() == [4, 0]

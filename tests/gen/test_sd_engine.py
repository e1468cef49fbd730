"""Stable Diffusion as an engine run: model sd:<folder> with a prompts: or sdimages: dataset, judged by a classifier
checkpoint or CLIP zero-shot; no oracle (no retrain / floor runs, no gap metrics); latents cached by image content;
clear errors (CLI exit 2) for a missing judge, image-needing methods on prompts only, and a bad pipeline folder."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

PROMPTS = ["a photo of a cat", "a photo of a dog"]
FAST = {"samples": 2, "sample_steps": 2, "grid": 2}
ESD = {"iterations": 1, "ddim_steps": 2, "lr": 1e-2}


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    p.write_text("# concepts\n" + "\n".join(PROMPTS) + "\n\n")
    return p


@pytest.fixture(scope="module")
def judge_ckpt(tmp_path_factory):
    """A randomly initialised 2-class CNN on 16 x 16 RGB images, saved as `unlearnlab train` saves checkpoints."""
    from unlearnlab.models import build_model, save_checkpoint

    path = tmp_path_factory.mktemp("judge") / "judge"
    net = build_model("cnn:width=4", (3, 16, 16), 2, seed=0)
    save_checkpoint(path, net, {"arch": "cnn:width=4", "num_classes": 2, "input_shape": [3, 16, 16],
                                "pixel_norm": [[0.5, 0.5, 0.5], [0.25, 0.25, 0.25]]})
    return path


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    """A tiny CLIPModel + CLIPProcessor folder built from configs (no download)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    root = tmp_path_factory.mktemp("clip")
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, **{t: i + 2 for i, t in
                                                          enumerate(letters + [x + "</w>" for x in letters])}}
    import json

    (root / "vocab.json").write_text(json.dumps(vocab))
    (root / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(root / "vocab.json"), str(root / "merges.txt"), model_max_length=16)
    torch.manual_seed(0)
    text = {"vocab_size": len(vocab), "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "max_position_embeddings": 16, "bos_token_id": 0, "eos_token_id": 1,
            "pad_token_id": 1}
    vision = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": 16, "patch_size": 8}
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=8)).save_pretrained(root / "model")
    proc = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 16},
                                                            crop_size={"height": 16, "width": 16}), tokenizer=tok)
    proc.save_pretrained(root / "model")
    return root / "model"


def _write_images(folder, n: int, seed: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(folder / f"{i}.png")


@pytest.fixture()
def image_dir(tmp_path):
    """sdimages: two prompt folders of random images (sorted by name); prompts.txt names the second one's prompt."""
    pytest.importorskip("PIL")
    _write_images(tmp_path / "imgs" / "a_photo_of_a_cat", 3, 0)
    _write_images(tmp_path / "imgs" / "dog", 3, 1)
    (tmp_path / "imgs" / "prompts.txt").write_text("dog: a photo of a dog\n")
    return tmp_path / "imgs"


def _spec(pipe, dataset, judge, methods=("esd",), **over):
    return {"model": f"sd:{pipe}", "dataset": dataset, "forget": "class:0", "methods": list(methods),
            "options": {**FAST, "judge": str(judge)}, "overrides": {"esd": ESD}, **over}


def test_plan_has_no_oracle(tiny_pipeline_vae, prompts_file, judge_ckpt):
    from unlearnlab.engine.runner import expand
    from unlearnlab.spec import from_dict

    spec = from_dict({**_spec(tiny_pipeline_vae, f"prompts:{prompts_file}", judge_ckpt), "seeds": [0, 1]})
    assert spec.task == "diffusion"  # a prompts: dataset picks the diffusion task
    g = expand([spec])
    assert g.count("build") == 0 and g.count("floor") == 0
    assert sorted(j.method for j in g.jobs.values()) == ["esd", "esd", "original", "original"]


def test_api_run_on_prompts_records_original_and_esd(tiny_pipeline_vae, prompts_file, judge_ckpt, tmp_path):
    from unlearnlab import api
    from unlearnlab.store import Store

    store = Store(tmp_path / "results")
    res = api.run(_spec(tiny_pipeline_vae, f"prompts:{prompts_file}", judge_ckpt), store=store, backend="serial")
    assert res["errors"] == []
    recs = {r["spec"]["method"]: r for r in res["records"]}
    assert set(recs) == {"original", "esd"} and store.count_runs() == 2
    for r in recs.values():
        m = r["metrics"]
        assert 0 <= m["UA"] <= 100 and 0 <= m["RA"] <= 100
        assert "Avg.Gap" not in m and "RTE/retrain" not in m and "FD" not in m  # no oracle, no real images
        assert any("no oracle" in n for n in r["notes"]) and "FD skipped" in r["details"]["fd_note"]
        assert r["details"]["prompts"] == PROMPTS and "samples_png" in r["artifacts"]
    assert recs["esd"]["timings"]["opt_steps"] == 1
    assert [row["method"] for row in res["table"]] == ["original", "esd"]
    (line,) = api.readings(res["records"])  # the leaderboard reading copes with no oracle and no Avg.Gap
    assert "no oracle" in line and "noise floor not measured" not in line
    again = api.run(_spec(tiny_pipeline_vae, f"prompts:{prompts_file}", judge_ckpt), store=store, backend="serial")
    assert store.count_runs() == 2 and {r["id"] for r in again["records"]} == {r["id"] for r in res["records"]}


def test_cli_run_with_clip_judge_prints_the_table(tiny_pipeline_vae, prompts_file, clip_dir, tmp_path):
    from typer.testing import CliRunner

    from unlearnlab.cli import app

    r = CliRunner().invoke(app, ["run", "--task", "diffusion", "--model", f"sd:{tiny_pipeline_vae}", "--dataset",
                                 f"prompts:{prompts_file}", "--forget", "class:0", "--methods", "esd", "--backend",
                                 "serial", "--results", str(tmp_path), "--option", f"judge=clip:{clip_dir}",
                                 "--option", "samples=2", "--option", "sample_steps=2", "--set", "esd.iterations=1",
                                 "--set", "esd.ddim_steps=2", "--no-report"])
    assert r.exit_code == 0, r.output
    assert "0 models, 2 runs, 0 floors" in r.output and "start retrain" not in r.output
    assert "│ original" in r.output and "│ esd" in r.output and "UA" in r.output and "reading: no oracle" in r.output


def test_sdimages_latents_fd_and_an_image_method(tiny_pipeline_vae, image_dir, judge_ckpt, tmp_path):
    from unlearnlab import api

    res = api.run(_spec(tiny_pipeline_vae, f"sdimages:{image_dir}", judge_ckpt, methods=("salun_gen",),
                        overrides={"salun_gen": {"iterations": 1, "batch_size": 2}}), store=None, backend="serial")
    assert res["errors"] == [], res["errors"]
    recs = {r["spec"]["method"]: r for r in res["records"]}
    assert recs["original"]["details"]["prompts"] == PROMPTS
    for r in recs.values():
        assert np.isfinite(r["metrics"]["FD"]) and 0 <= r["metrics"]["judge_acc_real"] <= 100


def test_latents_cache_is_keyed_by_image_content(tiny_pipeline_vae, image_dir, tmp_path):
    from unlearnlab.models.sd import load_vae
    from unlearnlab.store import Store
    from unlearnlab.tasks import sd_data

    store, vae = Store(tmp_path / "results"), load_vae(str(tiny_pipeline_vae))
    data = sd_data.load_prompt_data(f"sdimages:{image_dir}")
    z, cached = sd_data.image_latents(data, vae, "vae-a", 16, store)
    assert not cached and z.shape == (6, 4, 8, 8) and data.labels == [0, 0, 0, 1, 1, 1]
    sd_data._LATENTS.clear()  # a new process: answered from the store's cache
    z2, cached = sd_data.image_latents(data, vae, "vae-a", 16, store)
    assert cached and torch.equal(z, z2)
    assert not sd_data.image_latents(data, vae, "vae-b", 16, store)[1]  # another VAE: encoded again
    _write_images(image_dir / "a_photo_of_a_cat", 1, 7)  # overwrite its 0.png with other pixels
    changed = sd_data.load_prompt_data(f"sdimages:{image_dir}")
    z3, cached = sd_data.image_latents(changed, vae, "vae-a", 16, store)
    assert not cached and not torch.equal(z3[0], z[0]) and torch.equal(z3[1:], z[1:])


def _cli(args, tmp_path):
    from typer.testing import CliRunner

    from unlearnlab.cli import app

    r = CliRunner().invoke(app, ["run", *args, "--backend", "serial", "--results", str(tmp_path), "--no-report"])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    return r.output


def test_cli_errors_exit_2(tiny_pipeline_vae, prompts_file, judge_ckpt, tmp_path):
    base = ["--model", f"sd:{tiny_pipeline_vae}", "--dataset", f"prompts:{prompts_file}", "--forget", "class:0"]
    out = _cli([*base, "--methods", "esd"], tmp_path)
    assert "need a judge" in out and "judge=clip:" in out
    out = _cli([*base, "--methods", "esd,salun_gen", "--option", f"judge={judge_ckpt}"], tmp_path)
    assert "salun_gen" in out and "images" in out and "sdimages:" in out and "esd," not in out.split("need")[0]
    out = _cli([*base, "--methods", "doco", "--set", "doco.preserve=retain", "--option", f"judge={judge_ckpt}"],
               tmp_path)
    assert "doco (preserve=retain)" in out
    bad = tmp_path / "not-a-pipeline"
    (bad / "unet").mkdir(parents=True)
    out = _cli(["--model", f"sd:{bad}", "--dataset", f"prompts:{prompts_file}", "--forget", "class:0", "--methods",
                "esd", "--option", f"judge={judge_ckpt}"], tmp_path)
    assert "not a diffusers Stable Diffusion pipeline folder" in out and "text_encoder/" in out
    out = _cli([*base, "--methods", "esd", "--option", f"judge={tmp_path / 'nope'}"], tmp_path)
    assert "neither clip:" in out
    out = _cli([*base, "--methods", "retrain,esd", "--option", f"judge={judge_ckpt}"], tmp_path)
    assert "no retrained oracle" in out


def test_clip_judge_matches_clip_processor_and_model(clip_dir):
    """CLIP zero-shot: the judge's embeddings are CLIPModel's on CLIPProcessor's pixels (images at its size), and
    the prediction is the prompt of highest cosine similarity."""
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor

    from unlearnlab.eval.gen_metrics import judge_outputs
    from unlearnlab.tasks.sd_judge import sd_judge

    judge = sd_judge(f"clip:{clip_dir}", PROMPTS, (3, 16, 16), True, "cpu")
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    pil = [Image.fromarray(((i.permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)) for i in x]
    x = torch.from_numpy(np.stack([np.asarray(p) for p in pil])).permute(0, 3, 1, 2).float() / 127.5 - 1
    model, proc = CLIPModel.from_pretrained(clip_dir).eval(), CLIPProcessor.from_pretrained(clip_dir)
    with torch.no_grad():
        img = model.get_image_features(pixel_values=proc(images=pil, return_tensors="pt").pixel_values)
        txt = model.get_text_features(**proc.tokenizer(PROMPTS, padding=True, return_tensors="pt"))
    img, txt = (t if isinstance(t, torch.Tensor) else t.pooler_output for t in (img, txt))
    sim = torch.nn.functional.normalize(img, dim=-1) @ torch.nn.functional.normalize(txt, dim=-1).T
    pred, feats = judge_outputs(judge, x)
    assert np.allclose(feats, torch.nn.functional.normalize(img, dim=-1).numpy(), atol=1e-4)
    assert (pred == sim.argmax(1).numpy()).all()


def test_checkpoint_judge_resizes_and_standardises(tmp_path):
    """A checkpoint judge trained at another size with pixel_norm sees resized, standardised [0, 1] pixels; a
    checkpoint whose classes are not one per prompt is refused."""
    from unlearnlab.errors import ConfigError
    from unlearnlab.models import build_model, save_checkpoint
    from unlearnlab.tasks.sd_judge import sd_judge

    net = build_model("cnn:width=4", (3, 8, 8), 2, seed=0).eval()
    norm = [[0.4, 0.5, 0.6], [0.2, 0.3, 0.4]]
    save_checkpoint(tmp_path / "j", net, {"arch": "cnn:width=4", "num_classes": 2, "input_shape": [3, 8, 8],
                                          "pixel_norm": norm})
    judge = sd_judge(str(tmp_path / "j"), PROMPTS, (3, 16, 16), True, "cpu")
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    small = torch.nn.functional.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False, antialias=True)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in norm)
    with torch.no_grad():
        assert torch.allclose(judge.features(x), net.features(((small + 1) / 2 - mean) / std), atol=1e-6)
    with pytest.raises(ConfigError, match="num_classes = 3"):
        sd_judge(str(tmp_path / "j"), [*PROMPTS, "a photo of a bird"], (3, 16, 16), True, "cpu")


def test_train_writes_what_a_checkpoint_judge_reads(tmp_path):
    """`unlearnlab train` checkpoints carry input_shape (and pixel_norm for image datasets that standardise)."""
    from unlearnlab import api
    from unlearnlab.models.checkpoint import read_meta

    meta = api.train_original(dataset="digits", epochs=1, out=tmp_path / "m")
    assert read_meta(tmp_path / "m")["input_shape"] == meta["input_shape"] == [1, 8, 8]
    mean, std = meta["pixel_norm"]  # digits: one channel, standardised
    assert len(mean) == len(std) == 1 and 0 < mean[0] < 1 and 0 < std[0] < 1


def test_prompt_attack_on_sd_runs_with_images(tiny_pipeline_vae, image_dir, prompts_file, judge_ckpt, tmp_path):
    """The UnlearnDiffAtk-style attack runs on SD records (condition optimised on the forgotten prompt's latents,
    samples VAE-decoded for the judge); prompts-only data cannot be attacked (no real images): exit 2."""
    from unlearnlab import api

    spec = _spec(tiny_pipeline_vae, f"sdimages:{image_dir}", judge_ckpt)
    spec["options"].update(attack=True, attack_steps=2, attack_k=1)
    res = api.run(spec, store=None, backend="serial")
    assert res["errors"] == [], res["errors"]
    for r in res["records"]:
        m = r["metrics"]
        assert 0 <= m["ASR_pre"] <= 100 and 0 <= m["ASR_post"] <= 100 and m["attack_shift"] > 0
    out = _cli(["--model", f"sd:{tiny_pipeline_vae}", "--dataset", f"prompts:{prompts_file}", "--forget", "class:0",
                "--methods", "esd", "--option", f"judge={judge_ckpt}", "--option", "attack=true"], tmp_path)
    assert "prompts only" in out and "sdimages:" in out


def test_tune_sd_maximises_ua_on_another_prompt_under_an_ra_floor(tiny_pipeline_vae, prompts_file, judge_ckpt,
                                                                    tmp_path):
    """No oracle: tune selects on val:class:0 (the other prompt), maximising UA with RA floored against the
    original's; a gap objective is refused."""
    from unlearnlab import api
    from unlearnlab.errors import ConfigError
    from unlearnlab.store import Store

    pytest.importorskip("optuna")
    spec = {k: v for k, v in _spec(tiny_pipeline_vae, f"prompts:{prompts_file}", judge_ckpt).items()
            if k != "methods"}
    r = api.tune(spec, ["esd"], budget=2, store=Store(tmp_path / "s"), run_kwargs={"backend": "serial"},
                 spaces={"esd": {"lr": ("log", 1e-3, 1e-1)}})
    assert r["reference"] == "original" and r["objective"] == "UA" and r["direction"] == "maximize"
    e = r["methods"]["esd"]
    assert len(e["trials"]) == 2 and all(t["error"] is None for t in e["trials"])
    for t in e["trials"]:
        assert "original_RA" in t and t["feasible"] == (t["original_RA"] - t["RA"] <= 10.0)
    from unlearnlab.tasks.diffusion_sd import sd_forget

    assert sd_forget("val:class:0", PROMPTS) == [1] and sd_forget("val:class:1", PROMPTS) == [0]
    assert {x["spec"]["forget"] for x in r["records"]} == {"class:0"}  # the reported run's records
    if e["best"] is not None:
        assert e["best"]["value"] == max(t["value"] for t in e["trials"] if t["feasible"])
    with pytest.raises(ConfigError, match="no retrained oracle"):
        api.tune(spec, ["esd"], budget=1, objective="Avg.Gap")

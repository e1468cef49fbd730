"""The fine-tune recipe presets of language-model runs, TOFU's standard fine-tune in particular."""
from __future__ import annotations

import pytest

from unlearnlab.config import fields
from unlearnlab.errors import ConfigError, UnknownNameError
from unlearnlab.spec import from_dict
from unlearnlab.tasks.lm import FinetuneLMConfig, finetune_config, recipe_dict, train_config
from unlearnlab.train import lr_factor


def test_tofu_preset_is_openunlearnings_finetune_and_overrides_stack():
    for recipe in ({"preset": "tofu"}, "tofu"):
        for model in ("tiny", "smollm2", "some/hf-model"):  # the named preset replaces the model family's
            cfg = finetune_config(model, recipe)
            assert (cfg.lr, cfg.epochs, cfg.batch_size, cfg.optimizer, cfg.weight_decay, cfg.schedule,
                    cfg.warmup_epochs) == (1e-5, 5, 32, "adamw", 0.01, "linear", 1.0)
    tc = train_config(finetune_config("tiny", "tofu"))
    assert tc.warmup == pytest.approx(0.2) and tc.batch_size == 32 and tc.optimizer == "adamw"
    longer = finetune_config("tiny", {"preset": "tofu", "epochs": 10})
    assert longer.lr == 1e-5 and train_config(longer).warmup == pytest.approx(0.1)  # still one warm-up epoch
    assert lr_factor("linear", 10, 100, 0.2) == pytest.approx(0.5) and lr_factor("linear", 20, 100, 0.2) == 1.0
    assert finetune_config("tiny").lr == 3e-3 and train_config(finetune_config("tiny")).warmup == 0.0
    help_text = {f.name: f.metadata["help"] for f in fields(FinetuneLMConfig)}
    assert "OpenUnlearning" in help_text["warmup_epochs"] and "TOFU" in help_text["batch_size"]
    # stored recipes name the warm-up only when there is one (keys of runs stored before the field still match)
    assert "warmup_epochs" not in recipe_dict(finetune_config("tiny"))
    assert recipe_dict(finetune_config("tiny", "tofu"))["warmup_epochs"] == 1.0
    with pytest.raises(UnknownNameError, match="Did you mean 'tofu'"):
        finetune_config("tiny", {"preset": "tofuu"})


def test_spec_takes_a_recipe_preset_by_name():
    spec = from_dict({"task": "qa", "dataset": "qa", "forget": "10%", "recipe": "tofu"})
    assert spec.recipe == {"preset": "tofu"} and finetune_config("tiny", spec.recipe).warmup_epochs == 1.0
    with pytest.raises(ConfigError, match="language-model fine-tune recipe"):
        from_dict({"dataset": "digits", "recipe": "tofu"}).train_config()

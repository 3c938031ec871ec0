"""Every recipe parses, instantiates through the real CLI and trains one step on tiny digits data.

The 24 paper recipes are also checked against the paper code's per-model settings (pycls
configs/dds_baselines/regnet{x,y}/*_dds_8gpu.yaml: OPTIM.BASE_LR, TRAIN.BATCH_SIZE, TEST.BATCH_SIZE,
all on NUM_GPUS 8, 100 epochs, 5 warmup epochs, weight decay 5e-5).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from regnet_zoo.lightning.cli import RegNetCLI
from regnet_zoo.registry import get_entry, list_models

RECIPES = Path(__file__).resolve().parents[2] / "recipes"

# model -> (BASE_LR, TRAIN.BATCH_SIZE, TEST.BATCH_SIZE), copied from the pycls config files
PYCLS = {
    "regnetx_200mf": (0.8, 1024, 800), "regnetx_400mf": (0.8, 1024, 800), "regnetx_600mf": (0.8, 1024, 800),
    "regnetx_800mf": (0.8, 1024, 800), "regnetx_1.6gf": (0.8, 1024, 800), "regnetx_3.2gf": (0.4, 512, 400),
    "regnetx_4.0gf": (0.4, 512, 400), "regnetx_6.4gf": (0.4, 512, 400), "regnetx_8.0gf": (0.4, 512, 400),
    "regnetx_12gf": (0.4, 512, 400), "regnetx_16gf": (0.4, 512, 400), "regnetx_32gf": (0.2, 256, 200),
    "regnety_200mf": (0.8, 1024, 800), "regnety_400mf": (0.8, 1024, 800), "regnety_600mf": (0.8, 1024, 800),
    "regnety_800mf": (0.8, 1024, 800), "regnety_1.6gf": (0.8, 1024, 800), "regnety_3.2gf": (0.4, 512, 400),
    "regnety_4.0gf": (0.4, 512, 400), "regnety_6.4gf": (0.4, 512, 400), "regnety_8.0gf": (0.4, 512, 400),
    "regnety_12gf": (0.4, 512, 400), "regnety_16gf": (0.2, 256, 200), "regnety_32gf": (0.2, 256, 200),
}
ALL = sorted(p.name for p in RECIPES.glob("*.yaml"))
FAST_RECIPES = {"demo_digits.yaml", "finetune.yaml", "regnetx_200mf_100ep.yaml", "regnety_4.0gf_enhanced_250ep.yaml"}


def test_one_recipe_per_paper_model():
    assert sorted(PYCLS) == sorted(list_models(paper_only=True))
    assert {f"{m}_100ep.yaml" for m in PYCLS} <= set(ALL)
    assert {"regnety_4.0gf_enhanced_250ep.yaml", "finetune.yaml", "demo_digits.yaml"} <= set(ALL)


@pytest.mark.parametrize("model", sorted(PYCLS))
def test_paper_recipe_matches_pycls(model):
    r = yaml.safe_load((RECIPES / f"{model}_100ep.yaml").read_text())
    base_lr, train_bs, test_bs = PYCLS[model]
    m, d, t = r["model"], r["data"]["init_args"], r["trainer"]
    assert get_entry(m["model"]).name == model
    devices = t["devices"] * t.get("num_nodes", 1) * t.get("accumulate_grad_batches", 1)
    assert d["batch_size"] * devices == train_bs and d["val_batch_size"] * devices == test_bs
    assert m["base_lr"] * train_bs / m["reference_batch_size"] == pytest.approx(base_lr)
    assert (m["schedule_epochs"], t["max_epochs"], m["warmup_epochs"], m["warmup_factor"]) == (100, 100, 5, 0.1)
    assert (m["weight_decay"], m["momentum"], m["nesterov"], m["lr_policy"]) == (5e-5, 0.9, True, "cos")
    assert (d["image_size"], d["crop_pct"], d["pca_std"]) == (224, 0.875, 0.1)
    assert not m["zero_init_last"] and not m["ema"] and m["drop_path_rate"] == 0 and t["precision"] == "32-true"


TINY_DATA = ["--data", "regnet_zoo.lightning.DigitsDataModule", "--data.image_size", "32", "--data.batch_size", "2",
             "--data.val_batch_size", "2", "--data.num_workers", "0", "--data.pin_memory", "false",
             "--data.persistent_workers", "false"]


@pytest.fixture(scope="module")
def finetune_weights(tmp_path_factory):
    """A real weight file standing in for the Hub download of the finetune recipe (offline tests)."""
    from safetensors.torch import save_file

    from regnet_zoo.factory import create

    path = tmp_path_factory.mktemp("weights") / "regnety_800mf.safetensors"
    save_file(create("regnety_800mf").state_dict(), str(path))
    return str(path)


@pytest.mark.parametrize("recipe", [pytest.param(r, marks=() if r in FAST_RECIPES else pytest.mark.slow) for r in ALL])
def test_recipe_trains_one_step(recipe, tmp_path, finetune_weights):
    args = ["--config", str(RECIPES / recipe), *TINY_DATA, "--trainer.accelerator", "cpu",
            "--trainer.devices", "1", "--trainer.num_nodes", "1", "--trainer.strategy", "auto",
            "--trainer.fast_dev_run", "1", "--trainer.default_root_dir", str(tmp_path),
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    if recipe == "finetune.yaml":
        args += ["--model.pretrained", finetune_weights]
    cli = RegNetCLI(args=args, run=False)
    r = yaml.safe_load((RECIPES / recipe).read_text())
    assert cli.model.model.cfg == get_entry(r["model"]["model"]).cfg
    assert cli.model.hparams.num_classes == 10  # linked from the data
    before = {k: v.clone() for k, v in cli.model.model.state_dict().items()}
    cli.trainer.fit(cli.model, cli.datamodule)
    assert cli.trainer.global_step == 1
    changed = [k for k, v in cli.model.model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "one training step must change the weights"
    assert cli.model.lr_info["global_batch_size"] == 2
    assert cli.model.lr_info["peak_lr"] == pytest.approx(r["model"]["base_lr"] * 2 / 128)

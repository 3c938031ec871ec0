"""Every recipe parses, instantiates through the real CLI and trains one step on tiny digits data.

The 24 paper recipes are overlays on ``recipes/base/paper_100ep.yaml`` (``__base__``): each resolved
recipe is checked against the paper code's per-model settings (pycls
configs/dds_baselines/regnet{x,y}/*_dds_8gpu.yaml: OPTIM.BASE_LR, TRAIN.BATCH_SIZE, TEST.BATCH_SIZE,
all on NUM_GPUS 8, 100 epochs, 5 warmup epochs, weight decay 5e-5), and the ``__base__`` mechanism
(order of precedence, relative paths, missing bases, cycles, unknown keys) is tested on its own files.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import torch
import yaml

from regnet_zoo.cli import main
from regnet_zoo.lightning.cli import RegNetCLI, recipe_chain
from regnet_zoo.lightning.errors import RecipeError
from regnet_zoo.registry import get_entry, list_models

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
BASE = RECIPES / "base" / "paper_100ep.yaml"

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


def resolved(config: Path | str, *extra: str) -> dict:
    """The config ``regnet-zoo fit --config CONFIG EXTRA`` runs with (its ``--print_config``)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as e:
        RegNetCLI(args=["fit", "--config", str(config), *extra, "--print_config"])
    assert e.value.code in (0, None)
    return yaml.safe_load(out.getvalue())


def leaves(d: dict, prefix: str = "") -> dict:
    """``{"a.b": value}`` for every non-mapping value of a nested mapping."""
    out = {}
    for k, v in d.items():
        out.update(leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def test_one_recipe_per_paper_model():
    assert sorted(PYCLS) == sorted(list_models(paper_only=True))
    assert {f"{m}_100ep.yaml" for m in PYCLS} <= set(ALL)
    assert {"regnety_4.0gf_enhanced_250ep.yaml", "finetune.yaml", "demo_digits.yaml"} <= set(ALL)


@pytest.mark.parametrize("model", sorted(PYCLS))
def test_paper_recipe_is_an_overlay_holding_only_what_differs(model):
    overlay = yaml.safe_load((RECIPES / f"{model}_100ep.yaml").read_text())
    assert sorted(leaves(overlay)) == ["__base__", "data.init_args.batch_size", "data.init_args.val_batch_size",
                                       "model.model", "trainer.default_root_dir"]
    assert (RECIPES / overlay["__base__"]).resolve() == BASE
    assert overlay["trainer"]["default_root_dir"] == f"runs/{model}_100ep"


@pytest.mark.parametrize("model", sorted(PYCLS))
def test_paper_recipe_matches_pycls(model):
    r = resolved(RECIPES / f"{model}_100ep.yaml")
    base_lr, train_bs, test_bs = PYCLS[model]
    m, d, t = r["model"], r["data"]["init_args"], r["trainer"]
    assert get_entry(m["model"]).name == model and r["seed_everything"] == 1
    assert t["devices"] == 8 and t["num_nodes"] == 1 and t["accumulate_grad_batches"] == 1  # NUM_GPUS 8
    assert (d["batch_size"], d["val_batch_size"]) == (train_bs // 8, test_bs // 8)
    assert m["base_lr"] * train_bs / m["reference_batch_size"] == pytest.approx(base_lr) and m["scale_lr"]
    assert (m["schedule_epochs"], t["max_epochs"], m["warmup_epochs"], m["warmup_factor"]) == (100, 100, 5, 0.1)
    assert (m["weight_decay"], m["momentum"], m["nesterov"], m["lr_policy"], m["min_lr"]) == (5e-5, 0.9, True, "cos", 0)
    assert (d["image_size"], d["crop_pct"], d["pca_std"], d["auto_augment"]) == (224, 0.875, 0.1, None)
    assert not m["zero_init_last"] and not m["ema"] and m["drop_path_rate"] == 0 and t["precision"] == "32-true"
    assert not m["no_weight_decay_bn_bias"] and m["label_smoothing"] == m["mixup_alpha"] == m["cutmix_alpha"] == 0
    assert t["sync_batchnorm"] is False and t["strategy"] == "ddp"  # pycls: BN over each GPU's batch
    assert [(c["class_path"], c["init_args"]["num_samples"]) for c in t["callbacks"]] == [
        ("regnet_zoo.lightning.callbacks.PreciseBN", 8192)]
    assert t["default_root_dir"] == f"runs/{model}_100ep"


def test_enhanced_recipe_is_the_standard_one_plus_its_switches():
    standard = leaves(resolved(RECIPES / "regnety_4.0gf_100ep.yaml"))
    enhanced = leaves(resolved(RECIPES / "regnety_4.0gf_enhanced_250ep.yaml"))
    switches = {
        "model.zero_init_last": True, "model.drop_path_rate": 0.05, "model.no_weight_decay_bn_bias": True,
        "model.schedule_epochs": 250, "model.label_smoothing": 0.1, "model.mixup_alpha": 0.2,
        "model.cutmix_alpha": 1.0, "model.ema": True, "model.ema_decay": 0.9998, "model.channels_last": True,
        "data.init_args.auto_augment": "randaugment", "data.init_args.randaugment_magnitude": 9,
        "data.init_args.randaugment_num_ops": 2, "trainer.max_epochs": 250, "trainer.precision": "bf16-mixed",
        "trainer.default_root_dir": "runs/regnety_4.0gf_enhanced_250ep"}
    assert {k: enhanced[k] for k in switches} == switches
    assert set(enhanced) == set(standard)
    assert {k for k in enhanced if enhanced[k] != standard[k]} <= set(switches)  # all else is the standard's


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_base_overlay_then_command_line_take_precedence(tmp_path, monkeypatch):
    base = _write(tmp_path / "lib" / "base.yaml",
                  "model:\n  base_lr: 0.3\n  warmup_epochs: 2\n"
                  "data:\n  class_path: regnet_zoo.lightning.DigitsDataModule\n"
                  "  init_args:\n    batch_size: 8\n    val_fraction: 0.5\ntrainer:\n  max_epochs: 3\n")
    mid = _write(tmp_path / "lib" / "mid.yaml", "__base__: base.yaml\nmodel:\n  warmup_epochs: 1\n")
    top = _write(tmp_path / "runs" / "top.yaml",
                 "__base__: ../lib/mid.yaml\ndata:\n  init_args:\n    batch_size: 4\ntrainer:\n  max_epochs: 5\n")
    assert [p for p, _ in recipe_chain(top)] == [str(base), str(mid), str(top)]
    monkeypatch.chdir(tmp_path / "runs")  # __base__ is relative to the file naming it, not to the working folder
    r = leaves(resolved(top, "--trainer.max_epochs", "7"))
    assert r["data.class_path"] == "regnet_zoo.lightning.DigitsDataModule"
    assert (r["model.base_lr"], r["model.warmup_epochs"]) == (0.3, 1)
    assert (r["data.init_args.batch_size"], r["data.init_args.val_fraction"], r["trainer.max_epochs"]) == (4, 0.5, 7)
    later = _write(tmp_path / "later.yaml", "model:\n  base_lr: 0.05\n")  # a second --config still wins
    assert leaves(resolved(top, "--config", str(later)))["model.base_lr"] == 0.05


def test_missing_base_cycle_and_bad_base_are_recipe_errors(tmp_path, capsys):
    missing = _write(tmp_path / "missing.yaml", "__base__: nowhere.yaml\n")
    _write(tmp_path / "a.yaml", "__base__: b.yaml\n")
    cycle = _write(tmp_path / "b.yaml", "__base__: a.yaml\n")
    number = _write(tmp_path / "number.yaml", "__base__: 3\n")
    for bad in (missing, cycle, number):
        with pytest.raises(RecipeError):
            recipe_chain(bad)
        with pytest.raises(SystemExit) as e:  # the CLI: jsonargparse's usage error
            main(["fit", "--config", str(bad)])
        assert e.value.code == 2
        assert str(bad.name) in capsys.readouterr().err


def test_unknown_key_in_an_overlay_or_its_base_is_an_argument_error(tmp_path, capsys):
    base = _write(tmp_path / "base.yaml", "model:\n  learning_rate: 0.1\n")
    good = _write(tmp_path / "good.yaml", f"__base__: {BASE}\nmodel:\n  learning_rate: 0.1\n")
    for overlay in (good, _write(tmp_path / "bad_base.yaml", f"__base__: {base.name}\n")):
        with pytest.raises(SystemExit) as e:
            main(["fit", "--config", str(overlay)])
        assert e.value.code == 2 and "learning_rate" in capsys.readouterr().err


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
    r = resolved(RECIPES / recipe)
    assert cli.model.model.cfg == get_entry(r["model"]["model"]).cfg
    assert cli.model.hparams.num_classes == 10  # linked from the data
    before = {k: v.clone() for k, v in cli.model.model.state_dict().items()}
    cli.trainer.fit(cli.model, cli.datamodule)
    assert cli.trainer.global_step == 1
    changed = [k for k, v in cli.model.model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "one training step must change the weights"
    assert cli.model.lr_info["global_batch_size"] == 2
    assert cli.model.lr_info["peak_lr"] == pytest.approx(r["model"]["base_lr"] * 2 / 128)

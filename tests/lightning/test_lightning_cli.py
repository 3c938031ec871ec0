"""`regnet-zoo fit|validate|test|predict` through the real dispatcher: configs, errors, checkpoints, export."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import yaml

from regnet_zoo.cli import main

TINY_RUN = """
model:
  model: {{type: regnet, depth: 4, w0: 8, wa: 8.0, wm: 2.0, group_width: 8}}
  zero_init_last: true
  base_lr: 0.8
  warmup_epochs: 0.5
data:
  class_path: regnet_zoo.lightning.DigitsDataModule
  init_args: {{image_size: 16, batch_size: 32}}
trainer:
  max_epochs: 2
  limit_train_batches: 12
  log_every_n_steps: 4
  accelerator: cpu
  devices: 1
  enable_progress_bar: false
  enable_model_summary: false
  default_root_dir: {root}
"""


@pytest.fixture
def run_config(tmp_path) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(TINY_RUN.format(root=tmp_path / "run"))
    return path


def test_fit_validate_predict_export(run_config, tmp_path, capsys):
    from regnet_zoo.weights.publish import from_pretrained

    export = tmp_path / "export"
    assert main(["fit", "--config", str(run_config), "--export_dir", str(export)]) == 0
    out = capsys.readouterr().out
    ckpts = tmp_path / "run" / "checkpoints"
    assert (ckpts / "best.ckpt").is_file() and (ckpts / "last.ckpt").is_file()
    assert "Trained custom config for 2 epochs (24 steps)" in out and f"best checkpoint: {ckpts / 'best.ckpt'}" in out
    assert not list(ckpts.glob(".*.tmp"))  # atomic writes leave no temporary files
    metrics_csv = next((tmp_path / "run" / "logs").glob("version_*/metrics.csv"))
    header = metrics_csv.read_text().splitlines()[0].split(",")
    assert {"train/lr", "train/images_per_sec_step", "train/acc1", "val/acc1", "val/acc5", "val/loss"} <= set(header)

    best = torch.load(ckpts / "best.ckpt", map_location="cpu", weights_only=False)
    assert best["data_config"]["label_names"] == [str(i) for i in range(10)]
    # the export holds the best checkpoint's weights and the training data's preprocessing
    model = from_pretrained(export)
    for k, v in model.state_dict().items():
        assert torch.equal(v, best["state_dict"][f"model.{k}"]), k
    assert tuple(model.pretrained_cfg["input_size"]) == (3, 16, 16)
    import json

    best_score = next(v for k, v in best["callbacks"].items() if "ModelCheckpoint" in k)["best_model_score"]
    saved = json.loads((export / "config.json").read_text())
    assert saved["regnet_zoo"]["metrics"]["top1"] == pytest.approx(100 * float(best_score), abs=1e-3)
    assert saved["pretrained_cfg"]["label_names"] == [str(i) for i in range(10)]

    assert main(["validate", "--config", str(run_config), "--ckpt_path", str(ckpts / "best.ckpt")]) == 0
    val_out = capsys.readouterr().out
    acc = float(next(line for line in val_out.splitlines() if "val/acc1" in line).split()[-2])
    assert acc == pytest.approx(float(best_score), abs=1e-4)

    assert main(["predict", "--config", str(run_config), "--ckpt_path", str(ckpts / "best.ckpt")]) == 0
    rows = list(csv.DictReader((tmp_path / "run" / "predictions" / "predictions.csv").open()))
    from regnet_zoo.lightning import DigitsDataModule

    dm = DigitsDataModule(image_size=16)
    dm.setup("fit")
    labels = dm.val_set.labels.tolist()
    assert len(rows) == len(labels) == 359
    correct = sum(int(r["class1"]) == labels[int(r["index"])] for r in rows)
    assert correct / len(rows) == pytest.approx(acc, abs=1e-4)  # predict == validate on the same weights

    assert main(["test", "--config", str(run_config), "--ckpt_path", "last"]) == 0
    assert "test/acc1" in capsys.readouterr().out


def test_print_config_stacking_and_overrides(run_config, tmp_path, capsys):
    override = tmp_path / "override.yaml"
    override.write_text("model:\n  base_lr: 0.3\ndata:\n  init_args:\n    batch_size: 16\n")
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", str(run_config), "--config", str(override), "--model.warmup_epochs", "2",
              "--print_config"])
    assert e.value.code == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["model"]["base_lr"] == 0.3 and cfg["model"]["warmup_epochs"] == 2.0
    assert cfg["data"]["init_args"]["batch_size"] == 16 and cfg["data"]["init_args"]["image_size"] == 16
    assert cfg["model"]["model"]["depth"] == 4 and cfg["checkpoint"]["monitor"] == "val/acc1"
    assert "num_classes" not in cfg["model"]  # linked from the data


@pytest.mark.parametrize("extra,message", [
    (["--model.base_lr", "fast"], 'Parser key "model.base_lr"'),
    (["--model.bogus", "1"], "unrecognized arguments: --model.bogus"),
    (["--trainer.max_epochs", "two"], 'Parser key "trainer.max_epochs"'),
    (["--model.lr_policy", "cosine"], 'Parser key "model.lr_policy"'),  # the Literal of schedule.Policy
])
def test_bad_arguments_fail_with_jsonargparse_message(run_config, capsys, extra, message):
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", str(run_config), *extra])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_unknown_yaml_key_and_missing_root(run_config, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  learning_rate: 0.1\n")
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", str(run_config), "--config", str(bad)])
    assert e.value.code == 2 and "learning_rate" in capsys.readouterr().err
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "regnetx_200mf_100ep.yaml"
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(recipe)])
    assert "required: root" in capsys.readouterr().err


def test_data_errors_exit_1_with_one_line(run_config, tmp_path, capsys):
    code = main(["fit", "--config", str(run_config), "--data", "regnet_zoo.lightning.FinetuneDataModule",
                 "--data.root", str(tmp_path / "nowhere")])
    assert code == 1
    assert f"regnet-zoo fit: error: data folder '{tmp_path / 'nowhere'}' does not exist" in capsys.readouterr().err


def _ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def test_a_new_run_never_mixes_with_an_earlier_runs_checkpoints(run_config, tmp_path, capsys):
    """A second fresh fit into the same folder stops; --overwrite true starts over; --ckpt_path last resumes."""
    ckpts = tmp_path / "run" / "checkpoints"
    short = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2"]
    assert main(["fit", "--config", str(run_config), *short]) == 0
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.ckpt", "last.ckpt"]
    first = _ckpt(ckpts / "last.ckpt")
    capsys.readouterr()
    assert main(["fit", "--config", str(run_config), *short]) == 1
    err = capsys.readouterr().err
    assert f"regnet-zoo fit: error: checkpoint folder {ckpts} already holds an earlier run's checkpoints " \
           "(best.ckpt, last.ckpt)" in err and "--ckpt_path last" in err and "--overwrite true" in err
    assert torch.equal(_ckpt(ckpts / "last.ckpt")["state_dict"]["model.stem.conv.weight"],
                       first["state_dict"]["model.stem.conv.weight"])  # untouched
    # resume: continues the run (epoch 1, steps 3..5)
    assert main(["fit", "--config", str(run_config), *short[2:], "--trainer.max_epochs", "2",
                 "--ckpt_path", "last"]) == 0
    assert _ckpt(ckpts / "last.ckpt")["global_step"] == 6
    # overwrite: a new run from step 0; best.ckpt and last.ckpt are the new run's, no -v1 files
    assert main(["fit", "--config", str(run_config), *short, "--overwrite", "true",
                 "--trainer.limit_train_batches", "2"]) == 0
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.ckpt", "last.ckpt"]
    assert _ckpt(ckpts / "last.ckpt")["global_step"] == 2 and _ckpt(ckpts / "best.ckpt")["global_step"] == 2


@pytest.mark.slow
def test_last_checkpoint_is_written_every_epoch_when_the_metric_does_not_improve(run_config, tmp_path):
    """Lightning >= 2.6 copies ``save_last`` only when a top-k checkpoint is saved; ours follows every epoch.

    ``epoch`` monitored with mode ``min`` never improves after epoch 0: Lightning's own ``save_last`` leaves
    last.ckpt at epoch 0 (step 2) here, so a run killed later would lose every epoch since.
    """
    ckpts = tmp_path / "run" / "checkpoints"
    assert main(["fit", "--config", str(run_config), "--checkpoint.monitor", "epoch", "--checkpoint.mode", "min",
                 "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "2",
                 "--trainer.limit_val_batches", "1"]) == 0
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.ckpt", "last.ckpt"]
    best, last = _ckpt(ckpts / "best.ckpt"), _ckpt(ckpts / "last.ckpt")
    assert (best["epoch"], best["global_step"]) == (0, 2)
    assert (last["epoch"], last["global_step"]) == (1, 4)  # saved at epoch 1's validation end
    states = [v for k, v in last["callbacks"].items() if "ModelCheckpoint" in k]
    assert sorted(s["monitor"] or "" for s in states) == ["", "epoch"]
    section = next(s for s in states if s["monitor"] == "epoch")
    assert float(section["best_model_score"]) == 0 and section["best_model_path"] == str(ckpts / "best.ckpt")


def test_ckpt_path_last_before_any_checkpoint_keeps_pretrained_weights(run_config, tmp_path, capsys):
    """First `fit --ckpt_path last` (set and forget): a new run that loads the pretrained weights."""
    from safetensors.torch import save_file

    from regnet_zoo.lightning import RegNetClassifier

    cfg = yaml.safe_load(run_config.read_text())["model"]["model"]
    torch.manual_seed(123)
    weights = RegNetClassifier(cfg, num_classes=10).model.state_dict()
    save_file(weights, str(tmp_path / "w.safetensors"))
    # LR 0: one training step leaves the parameters as loaded
    args = ["fit", "--config", str(run_config), "--model.base_lr", "0", "--trainer.max_epochs", "1",
            "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1"]
    assert main([*args, "--model.pretrained", str(tmp_path / "w.safetensors"), "--ckpt_path", "last"]) == 0
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    state = _ckpt(last)["state_dict"]
    for k in ("stem.conv.weight", "s1.b1.conv1.conv.weight", "head.fc.weight"):
        assert torch.equal(state[f"model.{k}"], weights[k]), k
    # the second time the checkpoint exists: it is resumed and the (now missing) pretrained file is not read
    (tmp_path / "w.safetensors").unlink()
    args[args.index("--trainer.max_epochs") + 1] = "2"
    assert main([*args, "--model.pretrained", str(tmp_path / "w.safetensors"), "--ckpt_path", "last"]) == 0
    assert _ckpt(last)["global_step"] == 2


def test_missing_checkpoints_are_clear_errors(run_config, tmp_path, capsys):
    assert main(["validate", "--config", str(run_config), "--ckpt_path", "last"]) == 1
    assert f"--ckpt_path last: no last checkpoint in {tmp_path / 'run' / 'checkpoints'}" in capsys.readouterr().err
    assert main(["validate", "--config", str(run_config), "--ckpt_path", str(tmp_path / "nope.ckpt")]) == 1
    assert f"checkpoint file '{tmp_path / 'nope.ckpt'}' does not exist" in capsys.readouterr().err


def test_demo_recipe_runs_twice_in_a_row(tmp_path, capsys):
    """The main job re-run starts over (overwrite: true in the recipe) instead of stopping."""
    demo = Path(__file__).resolve().parents[2] / "recipes" / "demo_digits.yaml"
    args = ["fit", "--config", str(demo), "--trainer.default_root_dir", str(tmp_path), "--data.image_size", "16",
            "--data.batch_size", "8", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
            "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false"]
    assert main(args) == 0
    first = (tmp_path / "checkpoints" / "best.ckpt").stat().st_mtime_ns
    assert main(args) == 0
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert (tmp_path / "checkpoints" / "best.ckpt").stat().st_mtime_ns > first


def test_only_lightnings_leafspec_deprecation_is_filtered():
    import warnings

    from lightning.pytorch.utilities._pytree import _tree_flatten

    from regnet_zoo.lightning.errors import ignore_known_lightning_warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _tree_flatten([torch.ones(1)])  # Lightning's batch flattening, as in every training step
        assert any("LeafSpec" in str(w.message) for w in caught)  # what spammed every run
        caught.clear()
        ignore_known_lightning_warnings()
        _tree_flatten([torch.ones(1)])
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning, stacklevel=1)  # other module
        warnings.warn("something else is deprecated", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["`isinstance(treespec, LeafSpec)` is deprecated",
                                                "something else is deprecated"]

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

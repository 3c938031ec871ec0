"""The main job: `regnet-zoo fit --config recipes/demo_digits.yaml` reaches >= 95% validation top-1."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from regnet_zoo.cli import main

DEMO = Path(__file__).resolve().parents[2] / "recipes" / "demo_digits.yaml"


@pytest.mark.slow
def test_demo_digits_reaches_95_percent(tmp_path, capsys):
    assert main(["fit", "--config", str(DEMO), "--trainer.default_root_dir", str(tmp_path),
                 "--trainer.enable_progress_bar", "false"]) == 0
    out = capsys.readouterr().out
    acc = float(re.search(r"validation top-1: ([\d.]+)%", out).group(1))
    assert acc >= 95.0, out
    assert "Trained regnetx_200mf for 8 epochs (176 steps)" in out
    assert (tmp_path / "checkpoints" / "best.ckpt").is_file() and (tmp_path / "checkpoints" / "last.ckpt").is_file()

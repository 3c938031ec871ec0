"""The main job: `regnet-zoo fit --config recipes/demo_digits.yaml` reaches >= 95% validation top-1."""

from __future__ import annotations

import re

import pytest


@pytest.mark.slow
def test_demo_digits_reaches_95_percent(demo_run):
    assert demo_run.returncode == 0
    out = demo_run.stdout
    acc = float(re.search(r"validation top-1: ([\d.]+)%", out).group(1))
    assert acc >= 95.0, out
    assert "Trained regnetx_200mf for 8 epochs (176 steps)" in out
    ckpts = demo_run.root / "checkpoints"
    assert (ckpts / "best.ckpt").is_file() and (ckpts / "last.ckpt").is_file()

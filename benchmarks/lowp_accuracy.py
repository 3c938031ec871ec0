"""Accuracy of bf16 and int8 inference, measured on real data (issue 12, item 2).

1. The digits demo (``recipes/demo_digits.yaml``: RegNetX-200MF at 32 px, trained here in ~20 s):
   top-1 on the held validation split of the fp32 model, ``optimize_for_inference(dtype="bf16")`` and
   the int8 model calibrated on 300 training images, plus agreement and logit errors vs fp32.
2. A pretrained-layout model at 224 px (default RegNetY-4.0GF and RegNetX-8.0GF, 1000 classes):
   random weights, but BatchNorm statistics set by train-mode passes over images with natural-image
   statistics (colour images with a 1/f amplitude spectrum, normalised as ImageNet images), then eval;
   int8 calibrated on 300 such images, compared with fp32 on 200 others: top-1 agreement, max abs /
   relative logit error. (Upsampled digits are a poor choice here: their large constant areas leave
   many channels of a random network with near-zero variance, i.e. BN scales of up to 1/sqrt(eps),
   an ill-conditioned network no training produces; ``--bn-images digits`` shows it.)

    python benchmarks/lowp_accuracy.py [--models regnety_4.0gf,regnetx_8.0gf] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
import yaml

import regnet_zoo
from regnet_zoo.inference import optimize_for_inference, quantize_model
from regnet_zoo.inference.compare import compare_outputs, top1_accuracy
from regnet_zoo.inference.quantize import backend_versions
from regnet_zoo.lightning import DigitsDataModule, RegNetClassifier

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "recipes" / "demo_digits.yaml"


def train_demo_digits(root_dir: str) -> tuple[torch.nn.Module, DigitsDataModule]:
    """The demo recipe's model trained as ``regnet-zoo fit --config recipes/demo_digits.yaml`` does."""
    cfg = yaml.safe_load(DEMO.read_text())
    L.seed_everything(cfg["seed_everything"], verbose=False)
    dm = DigitsDataModule(**cfg["data"]["init_args"])
    module = RegNetClassifier(**cfg["model"], num_classes=10, in_chans=dm.in_chans)
    trainer = L.Trainer(max_epochs=cfg["trainer"]["max_epochs"], accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=root_dir)
    trainer.fit(module, dm)
    return module.export_model(), dm


def digits_at(n: int, size: int, offset: int = 0) -> torch.Tensor:
    """``n`` real images: digits upsampled to ``size`` px, 3 channels, roughly unit variance."""
    from sklearn.datasets import load_digits

    x = torch.as_tensor(load_digits().images[offset:offset + n], dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).expand(-1, 3, -1, -1)
    return ((x - 0.3) / 0.4).contiguous()


def natural_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """``n`` colour images with natural images' 1/f amplitude spectrum, zero mean / unit std per channel
    plus a random colour cast (what ImageNet-normalised photos look like statistically)."""
    g = torch.Generator().manual_seed(seed)
    f = torch.fft.fftfreq(size)
    radius = (f[:, None] ** 2 + f[None] ** 2).sqrt().clamp_min(1 / size)
    x = torch.fft.ifft2(torch.randn(n, 3, size, size, dtype=torch.complex64, generator=g) / radius).real
    x = (x - x.mean((2, 3), keepdim=True)) / x.std((2, 3), keepdim=True)
    return (0.9 * x + 0.3 * torch.randn(n, 3, 1, 1, generator=g)).contiguous()


def with_real_bn_statistics(model: torch.nn.Module, images: torch.Tensor, batch: int = 16) -> torch.nn.Module:
    """Set every BN's running statistics from train-mode passes over ``images`` (cumulative average)."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for chunk in images.split(batch):
            model(chunk)
    return model.eval()


def digits_report(tmp: str) -> dict:
    start = time.perf_counter()
    fp32, dm = train_demo_digits(tmp)
    train_s = time.perf_counter() - start
    val = list(dm.val_dataloader())
    bf16 = optimize_for_inference(fp32, "bf16")
    int8 = quantize_model(fp32, dm, num_images=300)
    out = {"train_s": round(train_s, 1), "val_images": sum(len(y) for _, y in val)}
    for name, m in (("fp32", fp32.eval()), ("bf16", bf16), ("int8", int8)):
        out[f"top1_{name}"] = top1_accuracy(m, val, 10)
    for name, m in (("bf16", bf16), ("int8", int8)):
        out[f"vs_fp32_{name}"] = compare_outputs(fp32, m, val)
    return out


def big_model_report(name: str, bn_images: str = "natural") -> dict:
    torch.manual_seed(0)
    if bn_images == "natural":
        bn, calib, test = natural_images(256, 224, 0), natural_images(300, 224, 1), natural_images(200, 224, 2)
    else:
        bn, calib, test = digits_at(256, 224), digits_at(300, 224, offset=300), digits_at(200, 224, offset=600)
    model = with_real_bn_statistics(regnet_zoo.create(name), bn)
    start = time.perf_counter()
    int8 = quantize_model(model, calib, num_images=300)
    quant_s = time.perf_counter() - start
    bf16 = optimize_for_inference(model, "bf16")
    batches = test.split(25)
    return {"model": name, "bn_images": bn_images, "calibration_images": 300, "test_images": len(test),
            "quantize_s": round(quant_s, 1),
            "int8": compare_outputs(model, int8, batches), "bf16": compare_outputs(model, bf16, batches)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="regnety_4.0gf,regnetx_8.0gf")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "lowp-accuracy-cpu.json"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bn-images", choices=("natural", "digits"), default="natural")
    parser.add_argument("--no-digits", action="store_true", help="skip the digits demo part")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report = {"versions": backend_versions(), "threads": args.threads}
    if not args.no_digits:
        with tempfile.TemporaryDirectory() as tmp:
            report["digits"] = digits_report(tmp)
        print(json.dumps(report["digits"], indent=1))
    report["pretrained_layout"] = []
    for name in filter(None, args.models.split(",")):
        report["pretrained_layout"].append(big_model_report(name, args.bn_images))
        print(json.dumps(report["pretrained_layout"][-1], indent=1))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Lightning's overhead: training images/s of ``Trainer.fit`` vs a plain PyTorch loop, same model and data.

Both runs train the same ``RegNetClassifier`` model with the same loader (``DigitsDataModule``'s
epoch-seeded loader, or synthetic ImageNet-size tensors), SGD + Nesterov + the paper's per-step LR
schedule (both from ``RegNetClassifier.make_optimizer``, which ``configure_optimizers`` returns), on the
same device. Lightning runs as ``regnet-zoo fit`` does (torchmetrics top-1/top-5,
loss/LR/throughput logging to CSV, EMA/mixup off) without checkpoint I/O; the plain loop does
forward, loss, backward, step, scheduler step and nothing else. Throughput counts the steps after
``--warmup`` steps; runs alternate (plain, Lightning, plain, ...) and the medians are compared.

    python benchmarks/lightning_overhead.py                       # digits 32x32, regnetx_200mf, CPU
    python benchmarks/lightning_overhead.py --steps 200 --repeats 3 --device cuda --data synthetic \\
        --image-size 224 --batch-size 128 --precision bf16-mixed --channels-last

Prints images/s of each run and the overhead ``1 - lightning / plain`` (goal: < 5%).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger

from regnet_zoo.lightning import DigitsDataModule, RegNetClassifier
from regnet_zoo.lightning.data import ClassificationDataModule, TensorImageDataset


class SyntheticDataModule(ClassificationDataModule):
    """Random (N, 3, S, S) images and labels held in memory (no decoding cost)."""

    def __init__(self, num_images: int, image_size: int, num_classes: int, batch_size: int):
        super().__init__(batch_size=batch_size)
        g = torch.Generator().manual_seed(0)
        self.classes = [str(i) for i in range(num_classes)]
        self.train_set = TensorImageDataset(torch.randn(num_images, 3, image_size, image_size, generator=g),
                                            torch.randint(0, num_classes, (num_images,), generator=g))
        self.val_set = self.train_set

    def setup(self, stage: str | None = None) -> None:
        pass


class StepTimes(L.Callback):
    """perf_counter at the start of every training batch, and at the end of the last."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())


def images_per_sec(times: list[float], batch_size: int, warmup: int) -> float:
    steps = len(times) - 1 - warmup
    return steps * batch_size / (times[-1] - times[warmup])


def make_data(args: argparse.Namespace) -> ClassificationDataModule:
    if args.data == "digits":
        return DigitsDataModule(image_size=args.image_size, batch_size=args.batch_size)
    return SyntheticDataModule(args.batch_size * (args.steps + args.warmup + 1), args.image_size, 1000,
                               args.batch_size)


def make_module(args: argparse.Namespace, num_classes: int) -> RegNetClassifier:
    return RegNetClassifier(args.model, num_classes=num_classes, zero_init_last=True, schedule_epochs=10,
                            warmup_epochs=1, channels_last=args.channels_last)


def run_lightning(args: argparse.Namespace) -> float:
    torch.manual_seed(0)
    dm = make_data(args)
    module = make_module(args, dm.num_classes)
    timer = StepTimes()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(accelerator=args.device, devices=1, precision=args.precision,
                            max_steps=args.steps + args.warmup, limit_val_batches=0, num_sanity_val_steps=0,
                            logger=CSVLogger(tmp, name="bench"), log_every_n_steps=50,
                            enable_checkpointing=False, enable_progress_bar=args.progress_bar,
                            enable_model_summary=False, callbacks=[timer], benchmark=args.device == "cuda")
        trainer.fit(module, dm)
    return images_per_sec(timer.times, args.batch_size, args.warmup)


def run_plain(args: argparse.Namespace) -> float:
    """The same training with a hand-written loop: no metrics, no logging, no hooks."""
    torch.manual_seed(0)
    dm = make_data(args)
    dm.setup("fit")
    module = make_module(args, dm.num_classes)
    device = torch.device(args.device if args.device != "gpu" else "cuda")
    model = module.model.to(device).train()
    # the optimizer and schedule Lightning gets from configure_optimizers, built by the same method
    opt, sched = module.make_optimizer(len(dm.train_dataloader()), module.hparams.schedule_epochs, args.batch_size)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16-mixed")
    loader = dm.train_dataloader()
    times, step, epoch = [], 0, 0
    total = args.steps + args.warmup
    while step < total:
        loader.sampler.set_epoch(epoch)
        for x, y in loader:
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter())
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            if args.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast:
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step == total:
                break
        epoch += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    times.append(time.perf_counter())
    return images_per_sec(times, args.batch_size, args.warmup)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="regnetx_200mf")
    p.add_argument("--data", choices=["digits", "synthetic"], default="digits")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=60, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps at the start of each run")
    p.add_argument("--repeats", type=int, default=2, help="runs of each kind (alternating)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--precision", default="32-true", help="32-true or bf16-mixed")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--progress-bar", action="store_true", help="Lightning with its progress bar (as the CLI)")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
    plain, light = [], []
    for i in range(args.repeats):
        plain.append(run_plain(args))
        light.append(run_lightning(args))
        print(f"run {i + 1}: plain {plain[-1]:.1f} img/s, lightning {light[-1]:.1f} img/s", flush=True)
    p_med, l_med = statistics.median(plain), statistics.median(light)
    print(f"{args.model} {args.data} {args.image_size}px batch {args.batch_size} on {args.device} "
          f"({args.precision}, {torch.get_num_threads()} threads): plain {p_med:.1f} img/s, "
          f"lightning {l_med:.1f} img/s, overhead {100 * (1 - l_med / p_med):+.1f}%")


if __name__ == "__main__":
    main()

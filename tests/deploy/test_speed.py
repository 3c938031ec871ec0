"""regnet_zoo.inference.speed and `regnet-zoo benchmark`: interleaved timing, the variant comparison, the command."""

from __future__ import annotations

import json
import statistics
import time

import pytest
import torch
from torch import nn

from regnet_zoo.cli import main as cli
from regnet_zoo.inference.speed import (
    BASELINE,
    Variant,
    compare,
    default_variants,
    flush_denormal_enabled,
    time_interleaved,
    zoo_eager,
)


def test_interleaved_order_and_medians():
    calls = []
    cases = {n: (lambda n=n: calls.append(n)) for n in "abc"}
    out = time_interleaved(cases, 4, warmup=1, repeats=3)
    assert calls == list("abc") + list("abc") + list("bca") + list("cab")
    assert all(len(t.seconds) == 3 and t.batch == 4 for t in out.values())


def test_timing_ratio_of_known_durations():
    cases = {"short": lambda: time.sleep(0.004), "long": lambda: time.sleep(0.012)}
    out = time_interleaved(cases, {"short": 1, "long": 2}, warmup=0, repeats=7)
    assert 0.012 <= out["long"].min_s <= out["long"].median_s and out["long"].min_s < 0.05
    # fastest calls: sleep overshoot (worse on a loaded machine) only lengthens calls
    ratio = out["short"].best_images_per_s / out["long"].best_images_per_s  # 1/0.004 vs 2/0.012 -> 1.5
    assert ratio == pytest.approx(1.5, abs=0.3)
    with pytest.raises(ValueError):
        time_interleaved(cases, 1, repeats=0)


class Sleeper(nn.Module):
    """A "model" whose call takes ``seconds``: known throughput, independent of the machine's speed."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.seconds)
        return x


def test_compare_runs_any_list_of_variants():
    seen = []

    def sleeper(seconds):
        def build(model, entry, layout):
            seen.append((entry.name, layout, model.training))
            return Sleeper(seconds)
        return build

    variants = [Variant("fast", sleeper(0.005)), Variant(BASELINE, sleeper(0.015))]
    r = compare("RegNetX-200MF", batch=3, layouts=("nhwc", "nchw"), variants=variants, resolution=32, repeats=3,
                threads=1)
    assert seen == [("regnetx_200mf", "nhwc", False)] * 2 + [("regnetx_200mf", "nchw", False)] * 2
    rows = {row["case"]: row for row in r["rows"]}
    assert list(rows) == ["fast@nhwc", f"{BASELINE}@nhwc", "fast@nchw", f"{BASELINE}@nchw"]
    assert r["baseline"] == f"{BASELINE}@nhwc" and r["threads"] == 1 and r["batch"] == 3
    base = rows[f"{BASELINE}@nhwc"]
    assert base["ratio"] == 1 and 3 / 0.05 < base["best_images_per_s"] <= 3 / 0.015
    for row in rows.values():
        assert row["ratio"] == pytest.approx(row["images_per_s"] / base["images_per_s"])
        assert row["ratio_best"] == pytest.approx(row["best_images_per_s"] / base["best_images_per_s"])
    assert rows["fast@nchw"]["ratio_best"] == pytest.approx(3.0, rel=0.3)  # 15 ms vs 5 ms per call (fastest calls)


def test_default_variants_compute_the_same_function(bn_randomizer):
    import regnet_zoo
    from regnet_zoo.registry import get_entry

    entry = get_entry("regnety_200mf")
    model = bn_randomizer(regnet_zoo.create(entry.name)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        for v in default_variants():
            for layout in ("nchw", "nhwc"):
                out = v.build(model, entry, layout)(x.contiguous(memory_format=torch.channels_last)
                                                    if layout == "nhwc" else x)
                torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4, msg=f"{v.name}@{layout}")
        assert model(x).equal(ref)  # the builders left the model alone
    assert zoo_eager(model, entry, "nhwc").stem.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert [v.name for v in default_variants(compile=True)][-1] == "zoo compiled"


def test_compare_restores_threads_and_denormal_flushing():
    seen = []

    def probe(model, entry, layout):
        seen.append((flush_denormal_enabled(), torch.get_num_threads()))
        return Sleeper(0)

    threads = torch.get_num_threads()
    for before in (False, True):
        torch.set_flush_denormal(before)
        try:
            compare("regnetx_200mf", batch=1, layouts=("nchw",), variants=[Variant(BASELINE, probe)],
                    resolution=32, repeats=1, threads=1)
            assert flush_denormal_enabled() is before and torch.get_num_threads() == threads
        finally:
            torch.set_flush_denormal(False)
    assert seen == [(True, 1), (True, 1)]  # on while it ran


def test_compare_bad_arguments():
    from regnet_zoo.registry import UnknownModelError

    with pytest.raises(ValueError):
        compare("regnetx_200mf", layouts=("nhcw",))
    with pytest.raises(ValueError):
        compare("regnetx_200mf", warmup=0)
    with pytest.raises(UnknownModelError):
        compare("regnetx_201mf")


@pytest.mark.slow
def test_cli_benchmark_small_run(tmp_path, capsys):
    out = tmp_path / "res" / "speed.json"
    rc = cli(["benchmark", "regnetx_200mf", "--batch", "2", "--threads", "2", "--layouts", "nchw,nhwc",
              "--repeats", "2", "--resolution", "64", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    (result,) = json.loads(out.read_text())
    assert sorted(p.name for p in out.parent.iterdir()) == ["speed.json"]  # written atomically, no temporaries
    rows = {r["case"]: r for r in result["rows"]}
    assert set(rows) == {f"{v}@{lay}" for v in ("zoo eager", "timm eager", "zoo fused") for lay in ("nchw", "nhwc")}
    assert result["baseline"] == "timm eager@nchw" and rows["timm eager@nchw"]["ratio"] == 1
    assert (result["model"], result["batch"], result["resolution"], result["threads"]) == ("regnetx_200mf", 2, 64, 2)
    for case, row in rows.items():
        assert len(row["times_s"]) == 2 and row["images_per_s"] == pytest.approx(2 / statistics.median(row["times_s"]))
        assert row["ratio"] == pytest.approx(row["images_per_s"] / rows["timm eager@nchw"]["images_per_s"])
        assert case in text


def test_cli_benchmark_bad_arguments(capsys):
    assert cli(["benchmark", "regnetx_200mf", "regnetx_200m"]) == 2  # every name checked before timing
    assert "regnetx_200mf" in capsys.readouterr().err
    assert cli(["benchmark", "regnetx_200mf", "--layouts", "nhcw"]) == 2
    assert cli(["benchmark", "regnetx_200mf", "--device", "tpu7"]) == 2
    for bad in (["--batch", "0"], ["--repeats", "-1"], []):
        with pytest.raises(SystemExit) as e:  # argparse's errors
            cli(["benchmark", *(["regnetx_200mf"] if bad else []), *bad])
        assert e.value.code == 2

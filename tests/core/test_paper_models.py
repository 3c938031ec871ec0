"""The 24 paper models against the paper code's own numbers.

Reference table (independent of our code): per-stage depths, widths and group widths are what pycls'
`generate_regnet` + `adjust_block_compatibility` produce for `configs/dds_baselines/regnet{x,y}/*.yaml`;
flops/params/acts at 224 are pycls' published `dev/model_complexity.json`.
"""

import pytest

from regnet_zoo import complexity
from regnet_zoo.registry import get_entry

# (model, stage depths, stage widths, stage group widths, flops, params, acts)
PYCLS = [
    ("RegNetX-200MF", [1, 1, 4, 7], [24, 56, 152, 368], [8, 8, 8, 8], 199040872, 2684792, 2164056),
    ("RegNetX-400MF", [1, 2, 7, 12], [32, 64, 160, 384], [16, 16, 16, 16], 397678568, 5157512, 3143272),
    ("RegNetX-600MF", [1, 3, 5, 7], [48, 96, 240, 528], [24, 24, 24, 24], 600891112, 6196040, 3975096),
    ("RegNetX-800MF", [1, 3, 7, 5], [64, 128, 288, 672], [16, 16, 16, 16], 799700712, 7259656, 5148744),
    ("RegNetX-1.6GF", [2, 4, 10, 2], [72, 168, 408, 912], [24, 24, 24, 24], 1602850792, 9190136, 7933512),
    ("RegNetX-3.2GF", [2, 6, 15, 2], [96, 192, 432, 1008], [48, 48, 48, 48], 3176622952, 15296552, 11367432),
    ("RegNetX-4.0GF", [2, 5, 14, 2], [80, 240, 560, 1360], [40, 40, 40, 40], 3964499816, 22118248, 12201608),
    ("RegNetX-6.4GF", [2, 4, 10, 1], [168, 392, 784, 1624], [56, 56, 56, 56], 6460292264, 26209256, 16369744),
    ("RegNetX-8.0GF", [2, 5, 15, 1], [80, 240, 720, 1920], [80, 120, 120, 120], 7995133416, 39572648, 14059688),
    ("RegNetX-12GF", [2, 5, 11, 1], [224, 448, 896, 2240], [112, 112, 112, 112], 12086679016, 46106056, 21366568),
    ("RegNetX-16GF", [2, 6, 13, 1], [256, 512, 896, 2048], [128, 128, 128, 128], 15940756456, 54278536, 25515496),
    ("RegNetX-32GF", [2, 7, 13, 1], [336, 672, 1344, 2520], [168, 168, 168, 168], 31735930792, 107811560, 36302160),
    ("RegNetY-200MF", [1, 1, 4, 7], [24, 56, 152, 368], [8, 8, 8, 8], 199519076, 3162996, 2168052),
    ("RegNetY-400MF", [1, 3, 6, 6], [48, 104, 208, 440], [8, 8, 8, 8], 401849056, 4344144, 3892496),
    ("RegNetY-600MF", [1, 3, 7, 4], [48, 112, 256, 608], [16, 16, 16, 16], 601227608, 6055160, 4334296),
    ("RegNetY-800MF", [1, 3, 8, 2], [64, 128, 320, 768], [16, 16, 16, 16], 797183328, 6263168, 5249888),
    ("RegNetY-1.6GF", [2, 6, 17, 2], [48, 120, 336, 888], [24, 24, 24, 24], 1612087326, 11202430, 8044814),
    ("RegNetY-3.2GF", [2, 5, 13, 1], [72, 216, 576, 1512], [24, 24, 24, 24], 3176496162, 19436338, 11263418),
    ("RegNetY-4.0GF", [2, 6, 12, 2], [128, 192, 512, 1088], [64, 64, 64, 64], 3973301344, 20646656, 12287200),
    ("RegNetY-6.4GF", [2, 7, 14, 2], [144, 288, 576, 1296], [72, 72, 72, 72], 6355221876, 30583252, 16407188),
    ("RegNetY-8.0GF", [2, 4, 10, 1], [168, 448, 896, 2016], [56, 56, 56, 56], 7963074196, 39180068, 17968916),
    ("RegNetY-12GF", [2, 5, 11, 1], [224, 448, 896, 2240], [112, 112, 112, 112], 12092395504, 51822544, 21384496),
    ("RegNetY-16GF", [2, 4, 11, 1], [224, 448, 1232, 3024], [112, 112, 112, 112], 15911534044, 83590140, 23041228),
    ("RegNetY-32GF", [2, 5, 12, 1], [232, 696, 1392, 3712], [232, 232, 232, 232], 32279583362, 145046770, 30261570),
]


def test_table_covers_the_24_paper_models():
    from regnet_zoo.registry import list_models

    assert sorted(get_entry(row[0]).name for row in PYCLS) == sorted(list_models(paper_only=True))
    assert len(PYCLS) == 24


@pytest.mark.parametrize("name,depths,widths,group_widths,flops,params,acts", PYCLS, ids=[r[0] for r in PYCLS])
def test_stages_equal_paper_code(name, depths, widths, group_widths, flops, params, acts):
    arch = get_entry(name).cfg.to_anynet()
    assert arch.depths == depths
    assert arch.widths == widths
    assert arch.group_widths == group_widths
    assert arch.bot_muls == [1.0] * len(depths)
    assert arch.stem_width == 32
    assert arch.se_ratio == (0.25 if name.startswith("RegNetY") else 0.0)


@pytest.mark.parametrize("name,depths,widths,group_widths,flops,params,acts", PYCLS, ids=[r[0] for r in PYCLS])
def test_complexity_equals_paper_code_to_the_unit(name, depths, widths, group_widths, flops, params, acts):
    assert complexity(name, resolution=224) == {"flops": flops, "params": params, "acts": acts}


@pytest.mark.parametrize("name", ["RegNetX-400MF", "RegNetX-1.6GF", "RegNetY-800MF"])
def test_half_up_rounding_would_give_other_widths(name):
    """Why the generator rounds half to even: half-up changes these models' widths (pycls uses np.round)."""
    import numpy as np

    from regnet_zoo.generator import stages_from_block_widths

    cfg = get_entry(name).cfg
    expected = next(r for r in PYCLS if r[0] == name)[2]
    half_up = lambda x: np.floor(np.asarray(x) + 0.5)  # noqa: E731
    k = half_up(np.log((np.arange(cfg.depth) * cfg.wa + cfg.w0) / cfg.w0) / np.log(cfg.wm))
    ws, _ = stages_from_block_widths((half_up(cfg.w0 * cfg.wm**k / 8) * 8).astype(int))
    g = [min(cfg.group_width, w) for w in ws]
    ws = [max(gi, int(half_up(w / gi)) * gi) for w, gi in zip(ws, g)]
    assert ws != expected
    assert cfg.to_anynet().widths == expected

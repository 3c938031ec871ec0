"""The model registry: every named RegNet, its generator parameters and its names. No torch.

One canonical lower-case name per model (``regnety_4.0gf``) and aliases for the paper's display
name (``RegNetY-4.0GF``), the paper's table style (``RegNetY-4000``), timm's (``regnety_040``) and
torchvision's (``regnet_y_4gf``). Matching ignores case and treats ``-`` like ``_``.

Parameters are the paper code's (pycls ``configs/dds_baselines``). The ``_tv`` entries use
torchvision's group rounding, which changes the widths of three models; torchvision's own names
for those three resolve to the ``_tv`` entries because they denote torchvision's architecture.

RegNetZ (``regnetz_500mf``, ``regnetz_4gf``; Dollár et al. 2021) are pycls' linear-block RegNets. timm's
``regnetz_b16``/``regnetz_c16``/``regnetz_d32``/``regnetz_e8`` are another family (timm's ByobNet
"RegNetZ"-inspired models); none of our names or aliases is one of theirs. ``timm_name`` is None where
timm has no model of the same architecture.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, replace

from regnet_zoo.config import RegNetCfg


class UnknownModelError(ValueError):
    """A model name that is not in the registry (the message lists the closest names)."""


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: canonical name, architecture and the names it is known by."""

    name: str  # canonical, e.g. "regnety_4.0gf"
    cfg: RegNetCfg
    display: str  # "RegNetY-4.0GF"
    timm_name: str | None  # "regnety_040"; None where timm has no twin of this architecture
    torchvision_name: str | None  # "regnet_y_8gf" where torchvision has the model
    paper: bool  # one of the 24 models of the paper
    description: str = ""
    extra_aliases: tuple[str, ...] = ()

    @property
    def aliases(self) -> tuple[str, ...]:
        """All names this entry answers to (canonical first)."""
        fam, flops = self.display.split("-", 1)  # "RegNetY", "4.0GF" (or a size in params: "10B")
        mflops = _mflops(flops)
        suffix = "_tv" if self.cfg.rounding == "torchvision" else ""
        names = [self.name, self.display + suffix.upper().replace("_", "-"),
                 f"{fam}-{mflops}{suffix}" if mflops else None, self.timm_name, f"{fam}_{flops}".lower() + suffix]
        if flops.endswith(".0GF"):
            names.append(f"{fam}-{flops.replace('.0GF', 'GF')}{suffix}")
        if self.torchvision_name:
            names.append(self.torchvision_name)
        names.extend(self.extra_aliases)
        return tuple(dict.fromkeys(n for n in names if n))


def _mflops(flops: str) -> int | None:
    """'4.0GF' -> 4000, '200MF' -> 200 (the paper's table style); None for other sizes ('10B')."""
    unit = flops[-2:].upper()
    if unit not in ("GF", "MF"):
        return None
    return int(round(float(flops[:-2]) * (1000 if unit == "GF" else 1)))


def normalize(name: str) -> str:
    """Case- and separator-insensitive key of a model name."""
    return name.strip().lower().replace("-", "_")


# (display, timm id, torchvision name, depth, w0, wa, wm, group width); pycls dds_baselines configs.
_X = [
    ("RegNetX-200MF", "regnetx_002", None, 13, 24, 36.44, 2.49, 8),
    ("RegNetX-400MF", "regnetx_004", None, 22, 24, 24.48, 2.54, 16),
    ("RegNetX-600MF", "regnetx_006", None, 16, 48, 36.97, 2.24, 24),
    ("RegNetX-800MF", "regnetx_008", "regnet_x_800mf", 16, 56, 35.73, 2.28, 16),
    ("RegNetX-1.6GF", "regnetx_016", "regnet_x_1_6gf", 18, 80, 34.01, 2.25, 24),
    ("RegNetX-3.2GF", "regnetx_032", "regnet_x_3_2gf", 25, 88, 26.31, 2.25, 48),
    ("RegNetX-4.0GF", "regnetx_040", None, 23, 96, 38.65, 2.43, 40),
    ("RegNetX-6.4GF", "regnetx_064", None, 17, 184, 60.83, 2.07, 56),
    ("RegNetX-8.0GF", "regnetx_080", "regnet_x_8gf", 23, 80, 49.56, 2.88, 120),
    ("RegNetX-12GF", "regnetx_120", None, 19, 168, 73.36, 2.37, 112),
    ("RegNetX-16GF", "regnetx_160", "regnet_x_16gf", 22, 216, 55.59, 2.1, 128),
    ("RegNetX-32GF", "regnetx_320", "regnet_x_32gf", 23, 320, 69.86, 2.0, 168),
]
_Y = [
    ("RegNetY-200MF", "regnety_002", None, 13, 24, 36.44, 2.49, 8),
    ("RegNetY-400MF", "regnety_004", "regnet_y_400mf", 16, 48, 27.89, 2.09, 8),
    ("RegNetY-600MF", "regnety_006", None, 15, 48, 32.54, 2.32, 16),
    ("RegNetY-800MF", "regnety_008", None, 14, 56, 38.84, 2.4, 16),
    ("RegNetY-1.6GF", "regnety_016", "regnet_y_1_6gf", 27, 48, 20.71, 2.65, 24),
    ("RegNetY-3.2GF", "regnety_032", "regnet_y_3_2gf", 21, 80, 42.63, 2.66, 24),
    ("RegNetY-4.0GF", "regnety_040", None, 22, 96, 31.41, 2.24, 64),
    ("RegNetY-6.4GF", "regnety_064", None, 25, 112, 33.22, 2.27, 72),
    ("RegNetY-8.0GF", "regnety_080", None, 17, 192, 76.82, 2.19, 56),
    ("RegNetY-12GF", "regnety_120", None, 19, 168, 73.36, 2.37, 112),
    ("RegNetY-16GF", "regnety_160", "regnet_y_16gf", 18, 200, 106.23, 2.48, 112),
    ("RegNetY-32GF", "regnety_320", "regnet_y_32gf", 20, 232, 115.89, 2.53, 232),
]
# torchvision's group rounding changes these three (timm's *_tv models).
_TV = {
    "RegNetX-400MF": ("regnetx_004_tv", "regnet_x_400mf"),
    "RegNetY-800MF": ("regnety_008_tv", "regnet_y_800mf"),
    "RegNetY-8.0GF": ("regnety_080_tv", "regnet_y_8gf"),
}
# Larger RegNetYs with public weights (SEER / SWAG); not in the paper.
_EXTRA = [
    ("RegNetY-64GF", "regnety_640", None, 20, 352, 147.48, 2.4, 328),
    ("RegNetY-128GF", "regnety_1280", "regnet_y_128gf", 27, 456, 160.83, 2.52, 264),
    ("RegNetY-256GF", "regnety_2560", None, 27, 640, 230.83, 2.53, 373),
]


# RegNetZ (Dollár et al. 2021, "Fast and Accurate Model Scaling"): pycls' linear block with bot_mul 4,
# SE 0.25, SiLU and a 1x1 head conv. pycls publishes the block and head (ResBottleneckLinearBlock, HEAD_W)
# but no RegNetZ yaml; the generator parameters are the paper authors' ClassyVision presets
# (classy_vision/models/regnet.py: regnet_z_500mf, regnet_z_4gf, "trained with a convolutional head").
# Head width 1024: timm's regnetz_005 (num_features=1024) and the RegNetZ-4GF of Xiao et al. 2021
# ("Early Convolutions Help Transformers See Better", Table 2: 4.0 GF, 28.1M params, 24.3M acts at its
# 256 px training size; head 0 or 1536 would give 27.1M / 28.9M params). RegNetZ-4GF is 4 GF at 256 px.
# (display, timm twin or None, depth, w0, wa, wm, group width, head width)
_Z = [
    ("RegNetZ-500MF", "regnetz_005", 21, 16, 10.7, 2.51, 4, 1024),
    ("RegNetZ-4GF", None, 28, 48, 14.5, 2.226, 8, 1024),  # timm's regnetz_040(_h): other head (0 + SiLU / 1536)
]
# SEER's RegNetY-10B trunk (Goyal et al. 2022; weights are not hosted in timm's or our layout). Parameters:
# facebookresearch/vissl configs/config/benchmark/fulltune/imagenet1k/models/regnet10B.yaml (REGNET: depth 27,
# w_0 1744, w_a 620.83, w_m 2.52, group_width 1010; SE from regnet_fsdp.py's defaults use_se True, se_ratio 0.25);
# its stage_checkpoints [[2], [7], [9, 17], [1]] and head dims [28280, 1000] are our stages' depths and last width.
# timm and torchvision have no 10B RegNet.
_SEER = [("RegNetY-10B", None, 27, 1744, 620.83, 2.52, 1010)]


def _torchvision_style(display: str) -> str:
    """'RegNetY-4.0GF' -> 'regnet_y_4gf', 'RegNetX-1.6GF' -> 'regnet_x_1_6gf'."""
    fam, flops = display.split("-", 1)
    flops = flops.lower().replace(".0gf", "gf").replace(".", "_")
    return f"regnet_{fam[-1].lower()}_{flops}"


def _build() -> dict[str, ModelEntry]:
    entries: dict[str, ModelEntry] = {}
    z = dict(bot_mul=4.0, block="z", activation="silu")
    rows = ([(r, 0.0, True, {}) for r in _X] + [(r, 0.25, True, {}) for r in _Y]
            + [(r, 0.25, False, {}) for r in _EXTRA] + [((d, t, None, *p), 0.25, False, {}) for d, t, *p in _SEER]
            + [((d, t, None, *p), 0.25, False, {**z, "head_width": hw}) for d, t, *p, hw in _Z])
    for (display, timm_name, tv, d, w0, wa, wm, g), se, paper, kw in rows:
        cfg = RegNetCfg(depth=d, w0=w0, wa=wa, wm=wm, group_width=g, se_ratio=se, **kw)
        # torchvision-style name for models torchvision lacks (its own names come from the table)
        tv_style = () if tv or display in _TV else (_torchvision_style(display),)
        e = ModelEntry(normalize(display), cfg, display, timm_name, tv, paper,
                       f"{display}{' (not in the paper)' if not paper else ''}", tv_style)
        entries[e.name] = e
        if display in _TV:
            tv_timm, tv_name = _TV[display]
            e_tv = replace(e, name=e.name + "_tv", cfg=replace(cfg, rounding="torchvision"),
                           timm_name=tv_timm, torchvision_name=tv_name, paper=False, extra_aliases=(),
                           description=f"{display} with torchvision's group rounding (torchvision's {tv_name})")
            entries[e_tv.name] = e_tv
    return entries


MODELS: dict[str, ModelEntry] = _build()
_ALIASES: dict[str, str] = {}
for _e in MODELS.values():
    for _a in _e.aliases:
        _key = normalize(_a)
        if _ALIASES.setdefault(_key, _e.name) != _e.name:
            raise RuntimeError(f"alias {_a!r} names both {_ALIASES[_key]} and {_e.name}")


def list_models(pattern: str | None = None, paper_only: bool = False) -> list[str]:
    """Canonical names matching a shell-style ``pattern`` (case-insensitive), like timm's."""
    names = [e.name for e in MODELS.values() if e.paper or not paper_only]
    if pattern:
        pat = normalize(pattern)
        names = [n for n in names if fnmatch.fnmatchcase(n, pat)
                 or any(fnmatch.fnmatchcase(normalize(a), pat) for a in MODELS[n].aliases)]
    return names


def closest_names(name: str, n: int = 5) -> list[str]:
    """Registered names closest to ``name`` (canonical names and aliases)."""
    keys = difflib.get_close_matches(normalize(name), list(_ALIASES), n=3 * n, cutoff=0.5)
    return list(dict.fromkeys(_ALIASES[k] for k in keys))[:n]


def get_entry(name: str) -> ModelEntry:
    """The entry for a canonical name or alias; ``UnknownModelError`` lists the closest names."""
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__}")
    key = _ALIASES.get(normalize(name))
    if key is None:
        close = closest_names(name)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}{hint}. `regnet-zoo list` or regnet_zoo.list_models() show all.")
    return MODELS[key]


def split_name_tag(spec: str) -> tuple[ModelEntry, str | None]:
    """Resolve ``NAME`` or ``NAME.TAG`` (e.g. ``regnety_4.0gf.ra3_in1k``) to (entry, tag)."""
    if normalize(spec) in _ALIASES:
        return get_entry(spec), None
    base, dot, tag = spec.rpartition(".")
    if dot and normalize(base) in _ALIASES:
        return get_entry(base), tag
    return get_entry(spec), None  # raises with the closest names

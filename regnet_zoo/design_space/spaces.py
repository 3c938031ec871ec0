"""The paper's design spaces as data: AnyNetX_A..E, RegNetX (+ refinements) and the Y (SE) variants.

Pure NumPy, no torch. ``sampling.sample`` draws models from a space and ``size`` counts it. Conventions:

* ``b`` is the paper's bottleneck *ratio*: bottleneck width = block width / b, so a config's
  ``bot_mul`` (pycls' BOT_MUL) is ``1 / b``.
* A block is *compatible* when its group width g divides its bottleneck width w/b and g <= w/b,
  i.e. when ``generator.adjust_block_compatibility`` would leave it unchanged. AnyNet samplers
  reject incompatible configs (altering them would break the space's ordering constraints);
  RegNet samplers adjust them, as the paper's code does when it builds a RegNet.
* Ranges the paper leaves open follow the paper's code (pycls ``sweep/config.py`` and
  ``sweep/samplers.py``): see ``RegNetSpace`` and ``sampling``.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, replace
from typing import Literal

SizeMethod = Literal["paper", "exact", "valid"]


class UnknownSpaceError(ValueError):
    """A design-space name that is not defined (the message lists the closest names)."""


def _check_range(name: str, lo: float, hi: float, minimum: float) -> None:
    if not minimum <= lo <= hi:
        raise ValueError(f"{name} range must satisfy {minimum} <= low <= high, got ({lo}, {hi})")


def _check_method(method: str) -> None:
    if method not in ("paper", "exact", "valid"):
        raise ValueError(f"method must be 'paper', 'exact' or 'valid', got {method!r}")


@dataclass(frozen=True)
class _Space:
    """What AnyNet and RegNet spaces share: the block choices, every stage with stride 2."""

    name: str
    description: str = ""
    bottleneck_ratios: tuple[int, ...] = (1, 2, 4)  # allowed b (bottleneck = w / b)
    group_widths: tuple[int, ...] = (1, 2, 4, 8, 16, 32)  # allowed g (channels per group)
    se_ratio: float = 0.0  # 0 for X blocks, 0.25 for Y blocks
    stem_width: int = 32  # stem output channels

    def __post_init__(self) -> None:
        for name in ("bottleneck_ratios", "group_widths"):
            values = getattr(self, name)
            if not values or any((not isinstance(v, int)) or v < 1 for v in values):
                raise ValueError(f"{name} must be a non-empty tuple of integers >= 1, got {values!r}")
        if not 0 <= self.se_ratio < 1:
            raise ValueError(f"se_ratio must be in [0, 1), got {self.se_ratio!r}")
        if not isinstance(self.stem_width, int) or self.stem_width < 1:
            raise ValueError(f"stem_width must be an integer >= 1, got {self.stem_width!r}")


@dataclass(frozen=True)
class AnyNetSpace(_Space):
    """AnyNetX-style space: ``num_stages`` stages, each with depth d_i, width w_i, ratio b_i, group g_i."""

    num_stages: int = 4
    max_depth: int = 16  # d_i in 1..max_depth
    max_width: int = 1024  # w_i a multiple of width_quantum in [width_quantum, max_width]
    width_quantum: int = 8
    shared_b: bool = False  # one b for all stages (AnyNetX_B)
    shared_g: bool = False  # one g for all stages (AnyNetX_C)
    widths_increasing: bool = False  # w_{i+1} >= w_i (AnyNetX_D)
    depths_increasing: bool = False  # d_{i+1} >= d_i (AnyNetX_E)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("num_stages", "max_depth", "width_quantum"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if self.max_width < self.width_quantum or self.max_width % self.width_quantum:
            raise ValueError(f"max_width must be a multiple of width_quantum={self.width_quantum}, "
                             f"got {self.max_width!r}")

    @property
    def width_values(self) -> int:
        """Number of allowed widths per stage."""
        return self.max_width // self.width_quantum

    def valid_width_counts(self) -> dict[tuple[int, int], int]:
        """(b, g) -> number of allowed widths w whose block (w, b, g) is compatible."""
        widths = range(self.width_quantum, self.max_width + 1, self.width_quantum)
        return {(b, g): sum(1 for w in widths if w % b == 0 and w // b >= g and (w // b) % g == 0)
                for b in self.bottleneck_ratios for g in self.group_widths}

    def size(self, method: SizeMethod = "paper") -> int:
        """Number of configurations in the space.

        ``"paper"``: the paper's estimate (Table 1), which divides by S! for each ordering
        constraint; ``"exact"``: the exact count of the definition (ordered sequences counted as
        multisets); ``"valid"``: exact count of configs whose blocks are all compatible.
        """
        s, nd, nw = self.num_stages, self.max_depth, self.width_values
        nb, ng = len(self.bottleneck_ratios), len(self.group_widths)
        n_order = int(self.widths_increasing) + int(self.depths_increasing)
        _check_method(method)
        if method == "paper":
            per_stage = nd * nw * (1 if self.shared_b else nb) * (1 if self.shared_g else ng)
            shared = (nb if self.shared_b else 1) * (ng if self.shared_g else 1)
            return per_stage ** s * shared // math.factorial(s) ** n_order
        counts = self.valid_width_counts() if method == "valid" else {
            (b, g): nw for b in self.bottleneck_ratios for g in self.group_widths}

        def seqs(n_values: int, increasing: bool) -> int:
            # length-s sequences from n_values values; non-decreasing ones are multisets
            return math.comb(n_values + s - 1, s) if increasing else n_values ** s

        depth_seqs = seqs(nd, self.depths_increasing)
        if self.shared_b and self.shared_g:
            return sum(depth_seqs * seqs(m, self.widths_increasing) for m in counts.values())
        if self.widths_increasing or self.depths_increasing:
            raise ValueError("ordering constraints are only defined with shared b and g (AnyNetX_C onwards)")
        if self.shared_b:
            return sum((nd * sum(counts[(b, g)] for g in self.group_widths)) ** s for b in self.bottleneck_ratios)
        if self.shared_g:
            return sum((nd * sum(counts[(b, g)] for b in self.bottleneck_ratios)) ** s for g in self.group_widths)
        return (nd * sum(counts.values())) ** s


@dataclass(frozen=True)
class RegNetSpace(_Space):
    """RegNet space: d, w0, wa, wm (+ b, g shared by all stages) through the quantized-linear generator.

    Ranges are inclusive (low, high); the sampler draws d uniformly and w0, wa, wm log-uniformly at
    their quanta (pycls' ``regnet_sampler``).
    """

    depth: tuple[int, int] = (1, 63)  # paper: d < 64
    w0: tuple[int, int] = (8, 248)  # multiples of q; paper: w0 < 256
    wa: tuple[float, float] = (8.0, 255.9)  # paper: wa < 256
    wm: tuple[float, float] = (1.5, 3.0)  # paper: 1.5 <= wm <= 3; refinement wm >= 2
    w0_equals_wa: bool = False  # refinement w0 = wa (then u_j = wa * (j + 1))
    num_stages: tuple[int, int] = (4, 4)  # allowed stage counts; configs that skip an exponent are rejected
    q: int = 8  # width quantum of the generator
    wa_quantum: float = 0.1
    wm_quantum: float = 0.001

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_range("depth", *self.depth, 1)
        _check_range("w0", *self.w0, self.q)
        if self.w0[0] % self.q or self.w0[1] % self.q:
            raise ValueError(f"w0 range must hold multiples of q={self.q}, got {self.w0}")
        _check_range("wa", *self.wa, 0.0)
        if not 1 < self.wm[0] <= self.wm[1]:
            raise ValueError(f"wm range must satisfy 1 < low <= high, got {self.wm}")
        _check_range("num_stages", *self.num_stages, 1)

    def size(self, method: SizeMethod = "paper") -> int:
        """Number of configurations.

        ``"paper"``: the paper's Table 1 estimate, ~64 levels for each of d, w0, wa, wm (one fewer
        free parameter with w0 = wa) times the b and g choices; ``"exact"`` (= ``"valid"``, as the
        generator makes every RegNet compatible): distinct parameter tuples at the sampler's quanta.
        """
        _check_method(method)
        nb, ng = len(self.bottleneck_ratios), len(self.group_widths)
        if method == "paper":
            return 64 ** (3 if self.w0_equals_wa else 4) * nb * ng
        nd = self.depth[1] - self.depth[0] + 1
        nw0 = (self.w0[1] - self.w0[0]) // self.q + 1
        nwa = 1 if self.w0_equals_wa else round((self.wa[1] - self.wa[0]) / self.wa_quantum) + 1
        nwm = round((self.wm[1] - self.wm[0]) / self.wm_quantum) + 1
        return nd * nw0 * nwa * nwm * nb * ng


DesignSpace = AnyNetSpace | RegNetSpace


def _build() -> dict[str, DesignSpace]:
    x: list[DesignSpace] = [
        AnyNetSpace("anynetx_a", "AnyNetX_A: per stage d<=16, w<=1024 (mult. of 8), b in {1,2,4}, g in {1..32}"),
        AnyNetSpace("anynetx_b", "AnyNetX_B: AnyNetX_A with one b shared by all stages", shared_b=True),
        AnyNetSpace("anynetx_c", "AnyNetX_C: AnyNetX_B with one g shared by all stages",
                    shared_b=True, shared_g=True),
        AnyNetSpace("anynetx_d", "AnyNetX_D: AnyNetX_C with non-decreasing widths",
                    shared_b=True, shared_g=True, widths_increasing=True),
        AnyNetSpace("anynetx_e", "AnyNetX_E: AnyNetX_D with non-decreasing depths",
                    shared_b=True, shared_g=True, widths_increasing=True, depths_increasing=True),
        RegNetSpace("regnetx", "RegNetX: d<64, w0<256, wa<256, 1.5<=wm<=3, b and g as AnyNetX_E"),
        RegNetSpace("regnetx_wm2", "RegNetX with the refinement wm >= 2", wm=(2.0, 3.0)),
        RegNetSpace("regnetx_w0wa", "RegNetX with the refinement w0 = wa", w0_equals_wa=True),
        RegNetSpace("regnetx_refined", "RegNetX with both refinements: wm >= 2 and w0 = wa",
                    wm=(2.0, 3.0), w0_equals_wa=True),
    ]
    spaces: dict[str, DesignSpace] = {s.name: s for s in x}
    for s in x:  # Y variants: the same space with SE (ratio 0.25) in every block
        name = s.name.replace("netx", "nety", 1)
        desc = s.description.replace("NetX", "NetY") + "; SE ratio 0.25"
        spaces[name] = replace(s, name=name, description=desc, se_ratio=0.25)
    return spaces


SPACES: dict[str, DesignSpace] = _build()


def get_space(name: str | DesignSpace) -> DesignSpace:
    """The space called ``name`` (case-insensitive, ``-`` = ``_``); a space object passes through."""
    if isinstance(name, _Space):
        return name
    key = str(name).strip().lower().replace("-", "_")
    if key in SPACES:
        return SPACES[key]
    close = difflib.get_close_matches(key, list(SPACES), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownSpaceError(f"unknown design space {name!r}{hint} (known: {', '.join(SPACES)})")

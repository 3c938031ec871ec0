"""Model configurations: frozen dataclasses, validated on construction. No torch.

``AnyNetCfg`` is the general network (stem, stages of residual bottleneck blocks, head);
``RegNetCfg`` holds the six RegNet parameters and turns into an ``AnyNetCfg`` through the
generator. Both are hashable, comparable and serialise to plain dicts (``to_dict``/``from_dict``).

Block types (pycls' ``BLOCK_TYPE``): ``"x"`` is the residual bottleneck block of RegNetX/Y
(``res_bottleneck_block``: projection shortcut when the shape changes, activation after the sum);
``"z"`` is RegNetZ's inverted-bottleneck linear block (``res_bottleneck_linear_block``, Dollár et al.
2021: ``bot_mul`` > 1 expands, no activation after the last 1x1, identity shortcut only when the
shape is unchanged, none otherwise). ``head_width`` > 0 adds pycls' head conv (1x1 conv + BN + act).
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Literal

from regnet_zoo.generator import ROUNDINGS, Rounding, check_regnet_params, generate_regnet

Block = Literal["x", "z"]
BLOCKS: tuple[str, ...] = ("x", "z")
Activation = Literal["relu", "silu", "gelu"]
ACTIVATIONS: tuple[str, ...] = ("relu", "silu", "gelu")  # pycls' MODEL.ACTIVATION_FUN choices


class BlockConfigError(ValueError):
    """A stage its block cannot build (bottleneck width not an integer, or not a multiple of the group width)."""


def _check_network(cfg: AnyNetCfg | RegNetCfg) -> None:
    """The stem width, SE ratio, block type, activation and head width fields of both configs."""
    _check_int("stem_width", cfg.stem_width, 1)
    if not 0 <= cfg.se_ratio < 1:
        raise ValueError(f"se_ratio must be in [0, 1), got {cfg.se_ratio!r}")
    if cfg.block not in BLOCKS:
        raise ValueError(f"block must be one of {BLOCKS} (x: RegNetX/Y bottleneck, z: RegNetZ linear "
                         f"inverted bottleneck), got {cfg.block!r}")
    if cfg.activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {cfg.activation!r}")
    _check_int("head_width", cfg.head_width, 0)


def _check_bottleneck(cfg: StageCfg | RegNetCfg) -> None:
    _check_int("group_width", cfg.group_width, 1)
    if not cfg.bot_mul > 0:
        raise ValueError(f"bot_mul must be > 0, got {cfg.bot_mul!r}")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class StageCfg:
    """One AnyNet stage: ``depth`` blocks of output ``width`` channels.

    The first block has stride ``stride``; the bottleneck width is ``round(width * bot_mul)``
    and the 3x3 conv has ``bottleneck_width // group_width`` groups.
    """

    depth: int
    width: int
    group_width: int
    bot_mul: float = 1.0
    stride: int = 2

    def __post_init__(self) -> None:
        _check_int("depth", self.depth, 1)
        _check_int("width", self.width, 1)
        _check_int("stride", self.stride, 1)
        _check_bottleneck(self)
        w_b = int(round(self.width * self.bot_mul))
        fix = "use generator.adjust_block_compatibility to fix the widths"
        if abs(self.width * self.bot_mul - w_b) > 1e-6:
            raise BlockConfigError(f"bottleneck width width * bot_mul = {self.width} * {self.bot_mul} must be an "
                                   f"integer number of channels; {fix}")
        if w_b < 1 or w_b % self.group_width:
            raise BlockConfigError(
                f"bottleneck width round(width * bot_mul) = {w_b} must be a positive multiple of "
                f"group_width = {self.group_width} (stage width {self.width}, bot_mul {self.bot_mul}; a group "
                f"cannot be wider than the bottleneck); {fix}"
            )

    @property
    def bottleneck_width(self) -> int:
        """Channels of the 1x1 -> 3x3 -> 1x1 bottleneck."""
        return int(round(self.width * self.bot_mul))

    @property
    def groups(self) -> int:
        """Number of groups of the 3x3 conv."""
        return self.bottleneck_width // self.group_width


@dataclass(frozen=True)
class AnyNetCfg:
    """An AnyNet: simple stem (3x3 s2 conv, BN, act), stages of ``block`` blocks, [head conv,] pool + linear.

    ``se_ratio`` > 0 adds Squeeze-and-Excitation (Y block) of width ``round(se_ratio * w_in)``,
    where ``w_in`` is the block's input width, as in the paper's code. ``activation`` is used
    everywhere (stem, blocks, SE, head conv), as pycls' ``MODEL.ACTIVATION_FUN``; ``head_width`` > 0
    puts a 1x1 conv to ``head_width`` channels + BN + act before the pool (pycls ``HEAD_W``).
    """

    stages: tuple[StageCfg, ...]
    stem_width: int = 32
    se_ratio: float = 0.0
    block: Block = "x"
    activation: Activation = "relu"
    head_width: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(
            s if isinstance(s, StageCfg) else StageCfg(**s) for s in self.stages))
        if not self.stages:
            raise ValueError("stages must hold at least one StageCfg")
        _check_network(self)

    @property
    def depths(self) -> list[int]:
        return [s.depth for s in self.stages]

    @property
    def widths(self) -> list[int]:
        return [s.width for s in self.stages]

    @property
    def group_widths(self) -> list[int]:
        return [s.group_width for s in self.stages]

    @property
    def bot_muls(self) -> list[float]:
        return [s.bot_mul for s in self.stages]

    @property
    def strides(self) -> list[int]:
        return [s.stride for s in self.stages]

    def to_anynet(self) -> AnyNetCfg:
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"type": "anynet", **asdict(self), "stages": [asdict(s) for s in self.stages]}


@dataclass(frozen=True)
class RegNetCfg:
    """The RegNet parameters (d, w0, wa, wm, g, b, SE) of the paper's design space.

    Attributes:
        depth: number of blocks d.
        w0: initial width (channels), a multiple of ``q``.
        wa: width slope (channels per block), >= 0.
        wm: width multiplier between stages, > 1.
        group_width: channels per group g of the 3x3 conv.
        bot_mul: bottleneck multiplier (bottleneck width = block width * bot_mul; 1 for RegNets).
        se_ratio: SE width / block input width (0 = RegNetX, 0.25 = RegNetY).
        stem_width: output channels of the stem.
        q: width quantum (8).
        rounding: ``"pycls"`` (the paper's) or ``"torchvision"`` (torchvision's group rounding).
        block: ``"x"`` (RegNetX/Y) or ``"z"`` (RegNetZ); activation, head_width: as ``AnyNetCfg``.
    """

    depth: int
    w0: int
    wa: float
    wm: float
    group_width: int
    bot_mul: float = 1.0
    se_ratio: float = 0.0
    stem_width: int = 32
    q: int = 8
    rounding: Rounding = "pycls"
    block: Block = "x"
    activation: Activation = "relu"
    head_width: int = 0
    _plan: Any = field(default=None, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        check_regnet_params(self.w0, self.wa, self.wm, self.depth, self.q)
        _check_bottleneck(self)
        _check_network(self)
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}, got {self.rounding!r}")
        plan = generate_regnet(
            self.w0, self.wa, self.wm, self.depth, self.group_width, self.bot_mul, self.q, self.rounding)
        object.__setattr__(self, "_plan", plan)

    @property
    def block_widths(self) -> list[int]:
        """Per-block widths before the compatibility step (length ``depth``)."""
        return self._plan.block.widths.tolist()

    def to_anynet(self) -> AnyNetCfg:
        """The AnyNet this RegNet generates (stride 2 in every stage)."""
        p = self._plan
        stages = tuple(
            StageCfg(depth=d, width=w, group_width=g, bot_mul=b)
            for d, w, g, b in zip(p.depths, p.widths, p.group_widths, p.bot_muls)
        )
        return AnyNetCfg(stages=stages, stem_width=self.stem_width, se_ratio=self.se_ratio, block=self.block,
                         activation=self.activation, head_width=self.head_width)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "regnet", **{f.name: getattr(self, f.name) for f in fields(self) if f.init}}


ModelCfg = RegNetCfg | AnyNetCfg


def _check_keys(cls: type, d: dict[str, Any], where: str) -> None:
    """Unknown or missing keys of a config dict -> ValueError saying which and where."""
    init = [f for f in fields(cls) if f.init]
    allowed = {f.name for f in init}
    required = {f.name for f in init if f.default is MISSING and f.default_factory is MISSING}
    unknown, missing = sorted(set(d) - allowed), sorted(required - set(d))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; allowed: {sorted(allowed)}")
    if missing:
        raise ValueError(f"{where}: missing required keys {missing}")


def cfg_from_dict(d: dict[str, Any]) -> ModelCfg:
    """Inverse of ``to_dict`` of either config type; unknown or missing keys raise ``ValueError``.

    Without a ``type`` key, a dict with ``stages`` is an AnyNet and any other a RegNet.
    """
    if not isinstance(d, dict):
        raise TypeError(f"a model config must be a dict, got {type(d).__name__}")
    d = dict(d)
    kind = d.pop("type", "anynet" if "stages" in d else "regnet")
    cls = {"regnet": RegNetCfg, "anynet": AnyNetCfg}.get(kind)
    if cls is None:
        raise ValueError(f"config type must be 'regnet' or 'anynet', got {kind!r}")
    _check_keys(cls, d, f"{kind} config")
    if cls is AnyNetCfg:
        stages = d["stages"]
        if not isinstance(stages, (list, tuple)) or not all(isinstance(st, dict) for st in stages):
            raise ValueError("anynet config: stages must be a list of dicts (depth, width, group_width, ...)")
        for i, st in enumerate(stages):
            _check_keys(StageCfg, st, f"anynet config stages[{i}]")
        d["stages"] = tuple(StageCfg(**st) for st in stages)
    return cls(**d)

"""Design spaces: the paper's sizes (Table 1), exact counts against enumeration, names."""

import itertools
import math

import pytest

from regnet_zoo.design_space import SPACES, AnyNetSpace, RegNetSpace, UnknownSpaceError, get_space


@pytest.mark.parametrize("name,paper", [
    # "Designing Network Design Spaces", Table 1 (design space summary)
    ("anynetx_a", 1.8e18), ("anynetx_b", 6.8e16), ("anynetx_c", 3.2e14),
    ("anynetx_d", 1.3e13), ("anynetx_e", 5.5e11), ("regnetx", 3.0e8),
])
def test_paper_sizes_match_table_1(name, paper):
    assert SPACES[name].size("paper") == pytest.approx(paper, rel=0.03)
    # the Y variant is the same space with SE
    assert SPACES[name.replace("netx", "nety")].size("paper") == SPACES[name].size("paper")


def test_anynetx_a_formula_by_hand():
    # 16 depths x 128 widths x 3 bottleneck ratios x 6 group widths, per stage, 4 stages
    assert SPACES["anynetx_a"].size("paper") == (16 * 128 * 3 * 6) ** 4
    assert SPACES["anynetx_a"].size("exact") == (16 * 128 * 3 * 6) ** 4


def _enumerate(space: AnyNetSpace, valid: bool) -> int:
    """Brute-force count of a tiny AnyNet space."""
    q, s = space.width_quantum, space.num_stages
    stage = list(itertools.product(range(1, space.max_depth + 1), range(q, space.max_width + 1, q),
                                   space.bottleneck_ratios, space.group_widths))
    n = 0
    for cfg in itertools.product(stage, repeat=s):
        ds, ws, bs, gs = zip(*cfg)
        if space.shared_b and len(set(bs)) > 1 or space.shared_g and len(set(gs)) > 1:
            continue
        if space.widths_increasing and list(ws) != sorted(ws) or space.depths_increasing and list(ds) != sorted(ds):
            continue
        if valid and not all(w % b == 0 and g <= w // b and (w // b) % g == 0 for w, b, g in zip(ws, bs, gs)):
            continue
        n += 1
    return n


@pytest.mark.parametrize("flags", [
    {}, {"shared_b": True}, {"shared_g": True}, {"shared_b": True, "shared_g": True},
    {"shared_b": True, "shared_g": True, "widths_increasing": True},
    {"shared_b": True, "shared_g": True, "widths_increasing": True, "depths_increasing": True},
])
def test_exact_and_valid_counts_equal_enumeration(flags):
    space = AnyNetSpace("small", num_stages=2, max_depth=3, max_width=32, bottleneck_ratios=(1, 2),
                        group_widths=(1, 4, 8), **flags)
    assert space.size("exact") == _enumerate(space, valid=False)
    assert space.size("valid") == _enumerate(space, valid=True)
    assert space.size("valid") < space.size("exact")


def test_ordering_constraints_reduce_by_about_s_factorial():
    c, d, e = (SPACES[f"anynetx_{x}"] for x in "cde")
    # the paper divides by 4! per ordering constraint; the exact multiset count is a bit larger
    assert c.size("exact") / d.size("exact") == pytest.approx(math.factorial(4), rel=0.1)
    assert d.size("exact") > d.size("paper") and e.size("exact") > e.size("paper")


def test_regnet_sizes():
    r = SPACES["regnetx"]
    assert r.size("paper") == 64 ** 4 * 3 * 6
    # d 1..63, w0 8..248 step 8, wa 8.0..255.9 step 0.1, wm 1.5..3 step 0.001, 3 b, 6 g
    assert r.size("exact") == 63 * 31 * 2480 * 1501 * 18
    assert SPACES["regnetx_w0wa"].size("exact") == 63 * 31 * 1501 * 18
    assert SPACES["regnetx_refined"].wm == (2.0, 3.0) and SPACES["regnetx_refined"].w0_equals_wa


def test_y_variants_add_se_only():
    for name, space in SPACES.items():
        if "nety" in name:
            x = SPACES[name.replace("nety", "netx")]
            assert space.se_ratio == 0.25 and x.se_ratio == 0.0
            assert space.size("valid") == x.size("valid")


def test_get_space_names_and_errors():
    assert get_space("AnyNetX-A") is SPACES["anynetx_a"]
    space = RegNetSpace("mine", depth=(10, 20))
    assert get_space(space) is space
    with pytest.raises(UnknownSpaceError, match="did you mean anynetx_a"):
        get_space("anynetx_aa")


@pytest.mark.parametrize("cls,kwargs,match", [
    (AnyNetSpace, {"max_width": 100}, "multiple of width_quantum"),
    (AnyNetSpace, {"group_widths": ()}, "group_widths"),
    (RegNetSpace, {"wm": (1.0, 3.0)}, "wm range"),
    (RegNetSpace, {"w0": (12, 248)}, "multiples of q"),
    (RegNetSpace, {"depth": (10, 5)}, "depth range"),
])
def test_invalid_space_definitions(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls("bad", **kwargs)


def test_ordering_without_shared_b_g_cannot_be_counted_exactly():
    with pytest.raises(ValueError, match="shared b and g"):
        AnyNetSpace("odd", widths_increasing=True).size("exact")

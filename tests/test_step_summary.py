"""compare_step (compare/step_summary.py), which reads a step's vectors a block at a time, gives the
same summaries as each pair measured on its own (PairSummary.add): the relative error per tensor, the
worst entry's index and values, the first non-finite entry, with tensors that straddle blocks."""
import numpy as np
import pytest

from compare import step_summary
from compare.lockstep import PAIRED
from compare.step_summary import PairSummary, compare_step, segment_starts, tensor_scales

SHAPES = {"W1": (7, 5), "b1": (7,), "W2": (40, 7), "b2": (40,), "W3": (3, 40), "b3": (3,)}


def _offs():
    offs, i = {}, 0
    for k, shape in SHAPES.items():
        n = int(np.prod(shape))
        offs[k] = (i, i + n, shape)
        i += n
    return offs, i


def _vectors(n, rng, plant=None):
    R = rng.standard_normal(n)
    C = R + 1e-12 * rng.standard_normal(n)
    vecs = {"reference": R, "candidate": C, "noise candidate": C + 1e-14 * rng.standard_normal(n),
            "noise reference": R - 1e-14 * rng.standard_normal(n)}
    if plant:
        role, i, value = plant
        vecs[role][i] = value
    return vecs


def _both_ways(vecs, offs):
    """(summaries by compare_step, summaries by one add per pair), over two steps."""
    def fresh():
        return {k: PairSummary(offs, "float64", worst=(k == "candidate")) for k in PAIRED}
    fused, plain = fresh(), fresh()
    losses = {r: 0.5 + 0.01 * i for i, r in enumerate(vecs)}
    for _ in range(2):
        compare_step(vecs, losses, fused, PAIRED, offs, segment_starts(offs))
        for k, p in plain.items():
            p.add(vecs[k], vecs[PAIRED[k]], losses[k], losses[PAIRED[k]], tensor_scales(vecs[PAIRED[k]], offs))
    return fused, plain


@pytest.mark.parametrize("block", [1, 3, 16, 35, 36, 64, 1 << 15])
@pytest.mark.parametrize("plant", [None, ("candidate", 50, np.nan), ("candidate", 300, np.inf),
                                   ("reference", 41, np.nan), ("noise reference", 0, -np.inf),
                                   ("candidate", 44, 1e3), ("reference", 299, 0.0)])
def test_blocked_comparison_gives_the_same_summaries_as_each_pair_alone(monkeypatch, block, plant):
    monkeypatch.setattr(step_summary, "BLOCK", block)
    offs, n = _offs()
    fused, plain = _both_ways(_vectors(n, np.random.default_rng(7), plant), offs)
    for k in PAIRED:
        assert fused[k].rel == plain[k].rel
        assert repr(fused[k].worst) == repr(plain[k].worst)   # NaN values compare by repr


def test_the_worst_entry_is_the_first_of_equal_largest_ones_across_blocks(monkeypatch):
    monkeypatch.setattr(step_summary, "BLOCK", 8)
    offs, n = _offs()
    vecs = _vectors(n, np.random.default_rng(1))
    s = offs["W2"][0]
    for i in (s + 10, s + 20, s + 200):  # three equal largest differences, in different blocks
        vecs["candidate"][i] = vecs["reference"][i] + 5.0
    fused, _ = _both_ways(vecs, offs)
    assert fused["candidate"].worst["W2"][-1][0] == [1, 3]  # entry 10 of a (40, 7) tensor
    assert fused["candidate"].worst["W2"][-1][3] == pytest.approx(5.0)


def test_the_loss_error_is_relative_to_the_largest_reference_loss_so_far():
    offs, n = _offs()
    v = _vectors(n, np.random.default_rng(5))
    p = PairSummary(offs, "float64", worst=False)
    for la, lb in ((2.0, 2.0), (1.05, 1.0), (np.inf, 1.0), (np.nan, 1.0), (1.0, np.nan), (1.0, np.inf), (1.5, 1.0)):
        p.add(v["candidate"], v["reference"], la, lb)
    assert p.rel["loss"] == [0.0, 0.0, pytest.approx(0.05 / 2.0), np.inf, np.inf, np.inf, np.inf, pytest.approx(0.25)]


def test_a_pair_whose_run_has_not_handed_in_the_step_is_left_alone():
    offs, n = _offs()
    vecs = _vectors(n, np.random.default_rng(2))
    del vecs["noise candidate"]
    pairs = {k: PairSummary(offs, "float64", worst=(k == "candidate")) for k in PAIRED}
    compare_step(vecs, dict.fromkeys(vecs, 0.5), pairs, PAIRED, offs, segment_starts(offs))
    assert len(pairs["noise candidate"].rel["W1"]) == 1 and len(pairs["noise reference"].rel["W1"]) == 2


def test_a_vector_of_another_length_than_the_network_is_refused():
    offs, n = _offs()
    vecs = _vectors(n, np.random.default_rng(6))
    pairs = {k: PairSummary(offs, "float64", worst=(k == "candidate")) for k in PAIRED}
    for bad in (np.r_[vecs["candidate"], 9.0], vecs["candidate"][:-1]):
        with pytest.raises(ValueError, match=f"entries where the network has {n}"):
            compare_step({**vecs, "candidate": bad}, dict.fromkeys(vecs, 0.5), pairs, PAIRED, offs, segment_starts(offs))

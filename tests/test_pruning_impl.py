import numpy as np
import pytest

from deadwood_tf import pruning_impl


def test_global_cut_prunes_exactly_round_s_times_p_with_different_layer_sparsities():
    rng = np.random.default_rng(0)
    scores = [rng.normal(size=(30, 7)), rng.normal(scale=5, size=(101,)), rng.normal(size=(3, 3, 2))]
    total = sum(s.size for s in scores)
    for s in (0.0, 0.33, 0.5, 0.9, 0.999):
        keep = pruning_impl.keep_masks([np.abs(x) for x in scores], s)
        assert sum(int((~k).sum()) for k in keep) == int(np.floor(s * total + 0.5))
    keep = pruning_impl.keep_masks([np.abs(x) for x in scores], 0.5)
    layer_sparsity = [float((~k).mean()) for k in keep]
    assert layer_sparsity[1] < 0.3 < layer_sparsity[0]  # the large-scale layer keeps more


def test_global_cut_removes_the_smallest_magnitudes():
    scores = [np.array([5.0, 1.0, 3.0]), np.array([[2.0, 4.0], [0.5, 6.0]])]
    keep = pruning_impl.keep_masks(scores, 3 / 7)
    assert keep[0].tolist() == [True, False, True]
    assert keep[1].tolist() == [[False, True], [False, True]]


def test_ties_are_broken_deterministically_by_position():
    scores = [np.ones(4), np.ones(4)]
    keep = pruning_impl.keep_masks(scores, 0.5)
    assert keep[0].tolist() == [False] * 4 and keep[1].tolist() == [True] * 4
    again = pruning_impl.keep_masks(scores, 0.5)
    assert all((a == b).all() for a, b in zip(keep, again))


def test_layer_scope_cuts_each_layer_to_the_target():
    rng = np.random.default_rng(1)
    scores = [rng.random(100), rng.random(40) * 100]
    keep = pruning_impl.keep_masks(scores, 0.75, scope="layer")
    assert [int((~k).sum()) for k in keep] == [75, 30]


def test_min_keep_guards_small_layers_and_keeps_the_total_exact():
    scores = [np.full(10, 0.01), np.linspace(1, 2, 90)]
    unguarded = pruning_impl.keep_masks(scores, 0.5)
    assert unguarded[0].sum() == 0  # the small-magnitude layer collapses
    guarded = pruning_impl.keep_masks(scores, 0.5, min_keep=3)
    assert guarded[0].sum() == 3
    assert sum(int((~k).sum()) for k in guarded) == 50
    frac = pruning_impl.keep_masks(scores, 0.5, min_keep=0.5)
    assert frac[0].sum() == 5


def test_already_pruned_weights_stay_pruned():
    scores = [np.array([-1.0, 0.001, 5.0, 7.0])]
    keep = pruning_impl.keep_masks(scores, 0.25)
    assert keep[0].tolist() == [False, True, True, True]


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5, "0.5", None, True])
def test_bad_sparsity_is_rejected_with_the_argument_named(bad):
    with pytest.raises(ValueError, match=r"`sparsity`.*\[0, 1\)"):
        pruning_impl.keep_masks([np.ones(3)], bad)


def test_bad_scope_and_impossible_min_keep_are_rejected():
    with pytest.raises(ValueError, match="`scope`"):
        pruning_impl.keep_masks([np.ones(3)], 0.5, scope="row")
    with pytest.raises(ValueError, match="`min_keep`"):
        pruning_impl.keep_masks([np.ones(10)], 0.9, min_keep=5)
    with pytest.raises(ValueError, match="`min_keep`"):
        pruning_impl.keep_masks([np.ones(10)], 0.5, min_keep=-1)

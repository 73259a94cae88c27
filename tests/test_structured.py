"""Structured sparsity: blocks and N:M as patterns of the one global magnitude rule."""

import keras
import numpy as np
import pytest

import deadwood_tf as dw
from deadwood_tf import pruning_impl


def _blocks_whole(keep, bh, bw):
    """True when every (bh, bw) block of the (fan_in, out) view is all kept or all pruned."""
    rows, cols = pruning_impl.matrix_view(keep.shape)
    m = keep.reshape(rows, cols)
    for r in range(0, rows, bh):
        for c in range(0, cols, bw):
            b = m[r:r + bh, c:c + bw]
            if b.any() and not b.all():
                return False
    return True


def _nm_holds(keep, n, m):
    rows, cols = pruning_impl.matrix_view(keep.shape)
    mat = keep.reshape(rows, cols)
    return all(mat[r:r + m, c].sum() <= n for c in range(cols) for r in range(0, rows, m))


@pytest.mark.parametrize("pattern", [(1, 4), (4, 1), (4, 4), "2x2"])
def test_block_cut_prunes_whole_blocks_with_the_lowest_norms(pattern):
    rng = np.random.default_rng(0)
    scores = [np.abs(rng.normal(size=(3, 3, 8, 16))), np.abs(rng.normal(size=(64, 32)))]
    keep = pruning_impl.keep_masks(scores, 0.75, pattern=pattern)
    bh, bw = pruning_impl.check_pattern(pattern)[1:]
    assert all(_blocks_whole(k, bh, bw) for k in keep)
    total = sum(s.size for s in scores)
    assert sum(int((~k).sum()) for k in keep) == round(0.75 * total)  # full blocks: exact
    # Every pruned block has a lower RMS than every kept block (one global threshold).
    rms_kept, rms_pruned = [], []
    for s, k in zip(scores, keep):
        rows, cols = pruning_impl.matrix_view(s.shape)
        sm, km = s.reshape(rows, cols), k.reshape(rows, cols)
        for r in range(0, rows, bh):
            for c in range(0, cols, bw):
                v = np.sqrt(np.mean(sm[r:r + bh, c:c + bw] ** 2))
                (rms_kept if km[r, c] else rms_pruned).append(v)
    assert max(rms_pruned) <= min(rms_kept)


def test_blocks_run_along_input_then_output_axis():
    # Dense kernel (in=4, out=4): pattern (1, 4) prunes whole rows (one input, 4 outputs).
    score = np.arange(1.0, 17.0).reshape(4, 4)
    keep = pruning_impl.keep_masks([score], 0.5, pattern=(1, 4))[0]
    assert keep.tolist() == [[False] * 4, [False] * 4, [True] * 4, [True] * 4]
    keep = pruning_impl.keep_masks([score], 0.5, pattern=(4, 1))[0]
    assert keep.tolist() == [[False, False, True, True]] * 4


def test_ragged_edge_blocks_and_already_pruned_blocks():
    rng = np.random.default_rng(1)
    score = np.abs(rng.normal(size=(6, 10)))      # 10 outputs: last 1x4 block has 2
    keep = pruning_impl.keep_masks([score], 0.5, pattern=(1, 4))[0]
    assert _blocks_whole(keep, 1, 4)
    assert abs((~keep).sum() - 30) < 4            # within one block of the target
    score2 = np.where(keep, score, -1.0)
    score2[0, 0] = -1.0                           # a half-dead block goes first, whole
    again = pruning_impl.keep_masks([score2], 0.6, pattern=(1, 4))[0]
    assert not again[0, :4].any() and not (again & ~keep).any()


def test_n_m_keeps_at_most_n_per_group_and_meets_a_higher_target_globally():
    rng = np.random.default_rng(2)
    scores = [np.abs(rng.normal(size=(3, 3, 4, 8))), np.abs(rng.normal(scale=3, size=(36, 10)))]
    total = sum(s.size for s in scores)
    low = pruning_impl.keep_masks(scores, 0.2, pattern="2:4")
    assert all(_nm_holds(k, 2, 4) for k in low)
    assert sum(int((~k).sum()) for k in low) == total // 2       # the pattern sets 50%
    high = pruning_impl.keep_masks(scores, 0.8, pattern="2:4")
    assert all(_nm_holds(k, 2, 4) for k in high)
    assert sum(int((~k).sum()) for k in high) == round(0.8 * total)
    # Inside each group of 4, the two largest survive the 2:4 step.
    one = pruning_impl.keep_masks([np.array([[4.0], [1.0], [3.0], [2.0]])], 0.0, pattern="2:4")[0]
    assert one.ravel().tolist() == [True, False, True, False]


@pytest.mark.parametrize("bad", ["3:2", "0:4", "1x0", (0, 4), (1, 2, 3), "blocks", 4, (1.5, 2)])
def test_bad_pattern_is_rejected_with_the_argument_named(bad):
    with pytest.raises(ValueError, match=r"`pattern`.*Received: pattern="):
        pruning_impl.keep_masks([np.ones(8)], 0.5, pattern=bad)
    with pytest.raises(ValueError, match=r"`pattern`"):
        dw.DeadwoodCallback(0.5, pattern=bad)


def test_bad_pattern_leaves_masks_untouched(teacher):
    wrapped = dw.prune_model(teacher)
    dw.apply_sparsity(wrapped, 0.5)
    before = [m.numpy().copy() for _, m in dw.pruned_weights(wrapped)]
    with pytest.raises(ValueError, match="`pattern`"):
        dw.apply_sparsity(wrapped, 0.8, pattern="5:4")
    after = [m.numpy() for _, m in dw.pruned_weights(wrapped)]
    assert all((a == b).all() for a, b in zip(before, after))


@pytest.mark.parametrize("pattern,check", [
    ((1, 4), lambda k: _blocks_whole(k, 1, 4)),
    ("2:4", lambda k: _nm_holds(k, 2, 4)),
])
def test_pattern_holds_in_every_pruned_tensor_through_deadwood_training(
        pattern, check, teacher, digits):
    x, y = digits[0][:256], digits[1][:256]
    keras.utils.set_random_seed(3)
    model = dw.DeadwoodModel(dw.prune_model(teacher), teacher,
                             attack=dw.FGSM(eps=0.1))
    model.compile(keras.optimizers.Adam(1e-2), metrics=["accuracy"])
    model.fit(x, y, epochs=3, batch_size=64, verbose=0,
              callbacks=[dw.DeadwoodCallback(0.75, prune_epoch=1, pattern=pattern, verbose=0)])
    plain = dw.strip_pruning(model)
    kernels = [l.kernel.numpy() for l in plain.layers if hasattr(l, "kernel")]
    assert len(kernels) == 4
    for kernel in kernels:
        assert check(kernel != 0)
    assert dw.sparsity_report(plain).sparsity >= 0.7


def test_config_pattern_reaches_the_callback_and_is_validated():
    from deadwood_tf import config as config_lib, train

    c = config_lib.default_config()
    c.prune.pattern = "4x4"
    train.validate(c)
    c.prune.pattern = "4:2"
    with pytest.raises(ValueError, match="prune.pattern"):
        train.validate(c)

"""The Lagrangian's terms, against values computed by hand."""

import math

import numpy as np
import pytest

from deadwood_tf import lagrangian


def test_distillation_gap_is_tau_squared_kl_of_the_softened_outputs():
    teacher = np.float32([[0.0, 0.0], [1.0, 2.0]])
    student = np.float32([[0.0, math.log(3.0)], [1.0, 2.0]])
    # Row 0: KL([1/2, 1/2] || [1/4, 3/4]) = 1/2 ln 2 + 1/2 ln(2/3) = 1/2 ln(4/3). Row 1: equal.
    np.testing.assert_allclose(lagrangian.distillation_gap(teacher, student, 1.0),
                               [0.5 * math.log(4 / 3), 0.0], atol=1e-6)
    # tau = 2: the student's row 0 softens to [1, sqrt 3] / (1 + sqrt 3).
    q = 1 / (1 + math.sqrt(3))
    expected = 4 * (0.5 * math.log(0.5 / q) + 0.5 * math.log(0.5 / (1 - q)))
    assert float(lagrangian.distillation_gap(teacher, student, 2.0)[0]) == pytest.approx(
        expected, rel=1e-5)


def test_hinge_violations_are_the_excess_over_the_bound():
    np.testing.assert_allclose(lagrangian.hinge_violations(np.float32([0.5, 1.0, 2.5]), 1.0),
                               [0.0, 0.0, 1.5])


def test_each_example_is_weighted_by_its_own_multipliers():
    lam, mu = np.float32([1, 2, 3]), np.float32([10, 20, 30])
    out = lagrangian.weighted_violations(lam, mu, np.int64([2, 0]), np.float32([1.0, 0.5]),
                                         np.float32([0.1, 1.0]))
    np.testing.assert_allclose(out, [3 * 1.0 + 30 * 0.1, 1 * 0.5 + 10 * 1.0], rtol=1e-6)


def test_normalized_l1_counts_only_surviving_weights_over_all_prunable_ones():
    pairs = [(np.float32([[1, -2], [3, -4]]), np.float32([[1, 0], [0, 1]])),
             (np.float32([0.5]), np.float32([1]))]
    # |1| + |-4| + |0.5| over P = 5 weights.
    assert float(lagrangian.normalized_l1(pairs, 5)) == pytest.approx(5.5 / 5)


def test_batch_mean_plain_weighted_global_and_empty():
    values = np.float32([1, 2, 3])
    assert float(lagrangian.batch_mean(values)) == pytest.approx(2.0)
    assert float(lagrangian.batch_mean(values, np.float32([1, 0, 1]))) == pytest.approx(2.0)
    assert float(lagrangian.batch_mean(values, np.float32([3, 1, 0]))) == pytest.approx(1.25)
    # A replica's share of a global batch of 6 examples.
    assert float(lagrangian.batch_mean(values, count=6)) == pytest.approx(1.0)
    assert float(lagrangian.batch_mean(np.zeros([0], "float32"))) == 0.0


def test_dual_update_is_the_clipped_step_on_the_mean_violation():
    v = lagrangian.mean_violations(np.float32([0.0, 2.0, 30.0, 3.0]), np.float32([0, 1, 1, 2]))
    np.testing.assert_allclose(v, [0.0, 2.0, 30.0, 1.5])  # unseen: 0, not a division by 0
    new = lagrangian.dual_update(np.float32([1.0, 1.0, 1.0, 0.0]), v, 0.5, 5.0)
    np.testing.assert_allclose(new, [1.0, 2.0, 5.0, 0.75])


def test_group_lasso_weights_each_group_norm_by_the_root_of_its_size():
    w = np.float32([[3.0, 0.0, 1.0], [4.0, 0.0, 1.0]])  # channel norms 5, 0, sqrt 2
    ids = np.int32([0, 1, 3])  # channel 2 in no group (id = number of groups)
    value = float(lagrangian.group_lasso([(w, (0,), ids)], [4, 2, 9]))
    assert value == pytest.approx((5 * 2 + 0) / 15, rel=1e-6)  # cut group 1 adds 0


@pytest.mark.parametrize("name", ["lagrangian", "pruning_schedule", "example_index",
                                  "pruning_impl", "channel_groups"])
def test_docstring_examples_run(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"deadwood_tf.{name}"))
    assert result.failed == 0 and result.attempted > 0

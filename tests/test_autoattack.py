"""APGD-CE, APGD-T, Square and the cascade on linear models, whose exact robust accuracy is known.

For logits `W^T x + b` and an L-inf ball that the input range never clips, an
example is robust iff for every class j != y:
`(w_y - w_j) . x + b_y - b_j > eps * ||w_y - w_j||_1` (the adversary's best
move against class j is `-eps * sign(w_y - w_j)`).
"""

import numpy as np
import pytest
import tensorflow as tf

from deadwood_tf import autoattack

EPS = 0.05
WIDE = dict(clip_min=-10.0, clip_max=10.0)  # never binds: x in [0, 1], eps 0.05


def linear_problem(classes, n=300, seed=0, wrong=20):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(36, classes)).astype(np.float32)
    b = (0.1 * rng.normal(size=classes)).astype(np.float32)
    x = rng.uniform(0, 1, size=(n, 6, 6, 1)).astype(np.float32)
    y = (x.reshape(n, -1) @ w + b).argmax(1)
    y[:wrong] = (y[:wrong] + 1) % classes  # some misclassified clean
    def model_fn(t):
        return tf.reshape(t, [-1, 36]) @ tf.constant(w) + tf.constant(b)

    flat = x.reshape(n, -1)
    robust = np.ones(n, bool)
    for j in range(classes):
        dw = w[:, y] - w[:, [j]]
        margin = np.einsum("nd,dn->n", flat, dw) + b[y] - b[j]
        robust &= (j == y) | (margin > EPS * np.abs(dw).sum(0))
    return model_fn, x, y, robust


def robust_under(model_fn, x_adv, x, y, eps=EPS, clip=(-10.0, 10.0)):
    assert np.abs(x_adv - x).max() <= eps * (1 + 1e-6)
    assert x_adv.min() >= clip[0] and x_adv.max() <= clip[1]
    return np.asarray(model_fn(tf.constant(x_adv))).argmax(1) == y


def test_apgd_ce_is_exact_on_a_binary_linear_model():
    model_fn, x, y, exact = linear_problem(2)
    assert 0.2 < exact.mean() < 0.8
    x_adv = autoattack.apgd(model_fn, x, y, EPS, n_iter=20, **WIDE)
    np.testing.assert_array_equal(robust_under(model_fn, x_adv, x, y), exact)


def test_apgd_targeted_is_exact_on_a_multiclass_linear_model():
    model_fn, x, y, exact = linear_problem(5)
    assert 0.15 < exact.mean() < 0.6
    x_adv = autoattack.apgd_targeted(model_fn, x, y, EPS, n_targets=4, n_iter=30, **WIDE)
    np.testing.assert_array_equal(robust_under(model_fn, x_adv, x, y), exact)
    # One target is not enough: the 3rd-ranked class is the weak side of some digits.
    x_one = autoattack.apgd_targeted(model_fn, x, y, EPS, n_targets=1, n_iter=30, **WIDE)
    assert robust_under(model_fn, x_one, x, y).sum() > exact.sum()


def test_square_comes_within_two_points_and_never_below_the_truth():
    model_fn, x, y, exact = linear_problem(5, n=200)
    x_adv, queries = autoattack.square(model_fn, x, y, EPS, n_queries=500, seed=1,
                                       return_queries=True, **WIDE)
    robust = robust_under(model_fn, x_adv, x, y)
    assert not np.any(~robust & exact)  # no attack breaks a provably robust example
    assert robust.sum() - exact.sum() <= 0.02 * len(x)
    # Queries: the stripes' one, then one per iteration while robust; the broken stop early.
    assert queries.max() == 501 and queries[robust].min() == 501
    assert np.median(queries[~robust]) < 501


def test_attacks_stay_in_the_ball_and_the_input_range():
    model_fn, x, y, _ = linear_problem(5, n=60)
    clip = dict(clip_min=0.1, clip_max=0.9)
    xc = np.clip(x, 0.1, 0.9)
    for x_adv in (autoattack.apgd(model_fn, xc, y, 0.2, n_iter=10, **clip),
                  autoattack.apgd(model_fn, xc, y, 0.2, n_iter=10, loss="dlr", **clip),
                  autoattack.apgd_targeted(model_fn, xc, y, 0.2, n_targets=2, n_iter=10, **clip),
                  autoattack.square(model_fn, xc, y, 0.2, n_queries=50, **clip)):
        assert x_adv.shape == xc.shape and x_adv.dtype == np.float32
        robust_under(model_fn, x_adv, xc, y, eps=0.2, clip=(0.1, 0.9))


def test_a_seed_reproduces_an_attack():
    model_fn, x, y, _ = linear_problem(5, n=50)
    a = autoattack.square(model_fn, x, y, EPS, n_queries=40, seed=3, **WIDE)
    np.testing.assert_array_equal(a, autoattack.square(model_fn, x, y, EPS, n_queries=40,
                                                       seed=3, **WIDE))
    assert not np.array_equal(a, autoattack.square(model_fn, x, y, EPS, n_queries=40, seed=4,
                                                   **WIDE))
    b = autoattack.apgd(model_fn, x, y, EPS, n_iter=5, seed=3, **WIDE)
    np.testing.assert_array_equal(b, autoattack.apgd(model_fn, x, y, EPS, n_iter=5, seed=3,
                                                     **WIDE))


def test_the_cascade_attacks_only_what_is_still_robust_and_reaches_the_truth():
    model_fn, x, y, exact = linear_problem(5)
    seen = {}

    def counted(name, attack):
        def run(xb, yb):
            seen.setdefault(name, []).append(len(xb))
            return attack(xb, yb)
        return name, run

    attacks = [
        counted("apgd_ce", lambda a, b: autoattack.apgd(model_fn, a, b, EPS, n_iter=20, **WIDE)),
        counted("apgd_t", lambda a, b: autoattack.apgd_targeted(model_fn, a, b, EPS, n_targets=4,
                                                                n_iter=30, **WIDE)),
        counted("square", lambda a, b: autoattack.square(model_fn, a, b, EPS, n_queries=100,
                                                         **WIDE))]
    out = autoattack.worst_case(model_fn, x, y, attacks, EPS, batch_size=128, **WIDE)
    robust = out["robust"]
    assert list(robust) == ["clean", "apgd_ce", "apgd_t", "square"]
    clean = np.asarray(model_fn(tf.constant(x))).argmax(1) == y
    np.testing.assert_array_equal(robust["clean"], clean)
    for before, name in (("clean", "apgd_ce"), ("apgd_ce", "apgd_t"), ("apgd_t", "square")):
        assert sum(seen[name]) == out["attacked"][name] == robust[before].sum()
        assert max(seen[name]) <= 128
        assert not np.any(robust[name] & ~robust[before])
    np.testing.assert_array_equal(robust["square"], exact)
    assert robust["apgd_ce"].sum() > exact.sum()  # CE alone misses some: APGD-T is needed


def test_the_cascade_refuses_an_attack_that_leaves_the_ball():
    model_fn, x, y, _ = linear_problem(5, n=40)
    with pytest.raises(RuntimeError, match="outside the eps=0.05 ball"):
        autoattack.worst_case(model_fn, x, y, [("far", lambda a, b: a + 0.1)], EPS, **WIDE)


@pytest.mark.parametrize("call, message", [
    (lambda f, x, y: autoattack.apgd(f, x, y, 0.0), "`eps`: expected a finite number > 0"),
    (lambda f, x, y: autoattack.apgd(f, x, y, 0.1, n_iter=0), "`n_iter`: expected an int >= 1"),
    (lambda f, x, y: autoattack.apgd(f, x, y, 0.1, loss="hinge"), "`loss`: expected one of"),
    (lambda f, x, y: autoattack.apgd(f, x, y, 0.1, rho=1.5), "`rho`: expected a number in"),
    (lambda f, x, y: autoattack.apgd(f, x, y, 0.1, clip_min=1, clip_max=0), "clip_min < clip_max"),
    (lambda f, x, y: autoattack.apgd(f, x, y[:3], 0.1), "`x`: expected an array of rank"),
    (lambda f, x, y: autoattack.apgd(f, x, y.astype(float), 0.1), "`y`: expected a 1-D array"),
    (lambda f, x, y: autoattack.apgd_targeted(f, x, y, 0.1, n_targets=5),
     r"`n_targets`: expected an int in \[1, 4\]"),
    (lambda f, x, y: autoattack.square(f, x, y, 0.1, n_queries=-1), "`n_queries`"),
    (lambda f, x, y: autoattack.square(f, x, y, 0.1, p_init=0), "`p_init`"),
    (lambda f, x, y: autoattack.square(f, x.reshape(len(x), -1), y, 0.1),
     "`x`: expected an array of rank >= 3"),
    (lambda f, x, y: autoattack.worst_case(f, x, y, [("clean", lambda a, b: a)], 0.1),
     "`attacks`: expected .* distinct names"),
])
def test_bad_arguments_raise_errors_naming_them(call, message):
    model_fn, x, y, _ = linear_problem(5, n=10)
    with pytest.raises(ValueError, match=message):
        call(model_fn, x, y)


def test_targeted_dlr_needs_four_classes():
    model_fn, x, y, _ = linear_problem(3, n=10)
    with pytest.raises(ValueError, match="at least 4 classes"):
        autoattack.apgd_targeted(model_fn, x, y, 0.1, n_targets=2)

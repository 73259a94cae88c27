"""Checks deadwood_tf.autoattack against ART on one adversarially trained MNIST CNN.

  python benchmarks/experiments/check_fast_attacks.py            # from the repository root

Trains (or loads from `--workdir`) the benchmark's CNN with a short PGD-5
adversarial training, then on the same test digits and seed compares

- APGD-CE: ours against ART's `AutoProjectedGradientDescent` with AutoAttack's
  initial step 2 * eps (ART's `eps_step` is its initial step), and ART's with the
  step the earlier worst case used (2 * eps / 10);
- Square: ours against ART's `SquareAttack`, `--square_queries` queries;

(robust accuracy, per-example agreement, wall time), and times our whole
worst-case cascade (the benchmark's `worst` settings) on `--cascade_examples`
test digits. Writes `<out_dir>/check_<date>.json` and prints a table.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from deadwood_tf import attacks as attacks_lib  # noqa: E402
from deadwood_tf import autoattack, models, pipeline, provenance  # noqa: E402
from deadwood_tf.benchmarks import worst_case  # noqa: E402
from deadwood_tf.benchmarks.config import benchmark_config  # noqa: E402

_DATA = flags.DEFINE_string("data", "", "MNIST in Keras' mnist.npz layout (pixels 0..255); "
                            "default: ../shared/data/mnist10k.npz from the repository (or the "
                            "worktree's parent's).")
_WORKDIR = flags.DEFINE_string("workdir", os.path.join(ROOT, "runs", "attack_check"),
                               "Where the trained model is cached (not committed).")
_OUT = flags.DEFINE_string("out_dir", os.path.join(ROOT, "benchmarks", "results", "mnist_cnn",
                                                   "attack_check"), "Where the JSON goes.")
_EPS = flags.DEFINE_float("eps", 0.2, "L-inf radius on pixels in [0, 1].")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the model and of every attack.")
_NATURAL = flags.DEFINE_integer("natural_epochs", 2, "Natural training epochs.")
_ADVERSARIAL = flags.DEFINE_integer("adversarial_epochs", 4, "PGD-5 adversarial epochs.")
_COMPARE = flags.DEFINE_integer("compare_examples", 200, "Test digits of the comparison "
                                "(0: skip it).")
_APGD_ITER = flags.DEFINE_integer("apgd_iter", 100, "APGD-CE iterations (both).")
_QUERIES = flags.DEFINE_integer("square_queries", 1000, "Square queries in the comparison.")
_TAG = flags.DEFINE_string("tag", "", "Appended to the JSON's name (check_<date>_<tag>.json).")
_CASCADE = flags.DEFINE_integer("cascade_examples", 1000, "Test digits of the timed cascade "
                                "(0: skip).")


def _data_path():
    if _DATA.value:
        return _DATA.value
    for up in ("..", os.path.join("..", "..")):
        path = os.path.join(ROOT, up, "shared", "data", "mnist10k.npz")
        if os.path.exists(path):
            return path
    raise app.UsageError("No ../shared/data/mnist10k.npz: pass --data=<Keras mnist.npz>.")


def _model(x_train, y_train):
    path = os.path.join(_WORKDIR.value, f"cnn_seed{_SEED.value}_n{_NATURAL.value}"
                        f"_a{_ADVERSARIAL.value}.keras")
    if os.path.exists(path):
        return keras.models.load_model(path), 0.0
    c = benchmark_config()
    keras.utils.set_random_seed(_SEED.value)
    t0 = time.time()
    model = models.build_model(c.model.name, x_train.shape[1:], 10, c.model.width)
    pipeline.fit_natural(model, keras.optimizers.Adam(1e-3), x_train, _NATURAL.value,
                         y=y_train, batch_size=128, verbose=2)
    pipeline.fit_adversarial(model, attacks_lib.from_config(c.attack),
                             keras.optimizers.Adam(1e-3), x_train, _ADVERSARIAL.value,
                             y=y_train, batch_size=128, verbose=2)
    os.makedirs(_WORKDIR.value, exist_ok=True)
    model.save(path)
    return model, time.time() - t0


def _art_classifier(model_fn, x, loss_object):
    from art.estimators.classification import TensorFlowV2Classifier

    return TensorFlowV2Classifier(model=lambda t, training=False: model_fn(t), nb_classes=10,
                                  input_shape=tuple(x.shape[1:]), clip_values=(0.0, 1.0),
                                  loss_object=loss_object)


def _art_apgd(model_fn, x, y, eps, initial_step):
    from art.attacks.evasion import AutoProjectedGradientDescent

    np.random.seed(_SEED.value)
    classifier = _art_classifier(model_fn, x,
                                 keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    attack = AutoProjectedGradientDescent(
        estimator=classifier, norm=np.inf, eps=eps, eps_step=initial_step,
        max_iter=_APGD_ITER.value, nb_random_init=1, loss_type="cross_entropy",
        batch_size=len(x), verbose=False)
    return attack.generate(x, y=y)


def _art_square(model_fn, x, y, eps):
    np.random.seed(_SEED.value)
    return attacks_lib.SquareAttack(eps, max_queries=_QUERIES.value)(model_fn, x, y)


def _robust(model_fn, x_adv, x, y, eps):
    assert np.abs(x_adv - x).max() <= eps + 1e-5 and x_adv.min() >= 0 and x_adv.max() <= 1
    return np.asarray(model_fn(tf.constant(x_adv, tf.float32))).argmax(-1) == y


def _compare(name, ours, art, clean):
    """Robust accuracy of both on the clean-correct digits' full set, and agreement."""
    ours, art = ours & clean, art & clean
    return {"attack": name, "ours": float(ours.mean()), "art": float(art.mean()),
            "agree": float((ours == art).mean()),
            "only_ours_broke": int(np.sum(~ours & art)), "only_art_broke": int(np.sum(ours & ~art)),
            # Paired noise: the discordant digits, as a standard error on the difference.
            "difference_se": float(np.sqrt(np.sum(ours != art)) / len(ours))}


def _write(path, out):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True, default=float)
        f.write("\n")


def main(argv):
    del argv
    t_start = time.time()
    with np.load(_data_path()) as d:
        x_train = (d["x_train"].astype("float32") / 255.0)[..., None]
        x_test = (d["x_test"].astype("float32") / 255.0)[..., None]
        y_train, y_test = d["y_train"].astype("int64"), d["y_test"].astype("int64")
    model, train_seconds = _model(x_train, y_train)
    fn = attacks_lib.logits_fn(model)
    model_fn = lambda t: fn(t, training=False)  # noqa: E731
    eps, seed = _EPS.value, _SEED.value
    load = {"start": os.getloadavg()}
    x, y = x_test[:_COMPARE.value], y_test[:_COMPARE.value]
    clean = np.asarray(model_fn(tf.constant(x))).argmax(-1) == y
    print(f"model: clean {100 * clean.mean() if len(x) else 0:.1f}% on {len(x)} digits "
          f"(trained in {train_seconds:.0f} s; 0 = loaded)", flush=True)

    runs = {
        "apgd_ce": lambda: autoattack.apgd(model_fn, x, y, eps, n_iter=_APGD_ITER.value,
                                           seed=seed),
        "art_apgd_ce": lambda: _art_apgd(model_fn, x, y, eps, 2 * eps),
        "art_apgd_ce_step_eps_over_5": lambda: _art_apgd(model_fn, x, y, eps, 2 * eps / 10),
        "square": lambda: autoattack.square(model_fn, x, y, eps, n_queries=_QUERIES.value,
                                            seed=seed),
        "art_square": lambda: _art_square(model_fn, x, y, eps),
    }
    robust, seconds = {}, {}
    for name, attack in (runs.items() if len(x) else ()):
        t0 = time.time()
        x_adv = attack()
        seconds[name] = time.time() - t0
        robust[name] = _robust(model_fn, np.asarray(x_adv, np.float32), x, y, eps)
        print(f"  {name}: {100 * (robust[name] & clean).mean():.1f}% robust, "
              f"{seconds[name]:.1f} s", flush=True)
    load["after_comparison"] = os.getloadavg()
    rows = [] if not len(x) else [_compare("APGD-CE (ART initial step 2 eps)", robust["apgd_ce"],
                     robust["art_apgd_ce"], clean),
            _compare("APGD-CE (ART initial step 2 eps / 10)", robust["apgd_ce"],
                     robust["art_apgd_ce_step_eps_over_5"], clean),
            _compare(f"Square ({_QUERIES.value} queries)", robust["square"],
                     robust["art_square"], clean)]
    for r, (ours, art) in zip(rows, [("apgd_ce", "art_apgd_ce"),
                                     ("apgd_ce", "art_apgd_ce_step_eps_over_5"),
                                     ("square", "art_square")]):
        r.update(ours_seconds=seconds[ours], art_seconds=seconds[art])

    out = {"model": {"architecture": benchmark_config().model.to_dict(),
                     "natural_epochs": _NATURAL.value, "adversarial_epochs": _ADVERSARIAL.value,
                     "train_seconds": train_seconds,
                     "clean_on_compared": float(clean.mean()) if len(x) else None},
           "eps": eps, "seed": seed, "compare_examples": len(x), "apgd_iter": _APGD_ITER.value,
           "square_queries": _QUERIES.value, "comparison": rows, "cascade": None,
           "load_average": load, "versions": provenance.versions(), "machine": {
               **provenance.machine(), "cores_usable": len(os.sched_getaffinity(0)),
               "note": "2 CPU cores shared with other jobs (see load_average)"},
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    try:
        import art
        out["versions"]["adversarial-robustness-toolbox"] = art.__version__
    except ImportError:
        pass
    path = os.path.join(_OUT.value, f"check_{out['date'][:10]}{'_' + _TAG.value if _TAG.value else ''}.json")
    _write(path, out)  # the comparison, before the long cascade

    cascade = None
    if _CASCADE.value:
        config = benchmark_config()
        xc, yc = x_test[:_CASCADE.value], y_test[:_CASCADE.value]
        print(f"cascade on {len(xc)} digits: {worst_case.EVALUATOR}", flush=True)
        tf.random.set_seed(seed)
        attacks = worst_case.cascade(config, model_fn, seed)
        t0 = time.time()
        result = autoattack.worst_case(model_fn, xc, yc, attacks, eps, verbose=True)
        cascade = {"examples": len(xc), "seconds": time.time() - t0,
                   "attack_seconds": result["seconds"], "attacked": result["attacked"],
                   "attacks": [n for n, _ in attacks],
                   "accuracy": {k: float(v.mean()) for k, v in result["robust"].items()},
                   "worst_config": config.worst.to_dict()}
        load["after_cascade"] = os.getloadavg()

    out.update(cascade=cascade, load_average=load, total_seconds=time.time() - t_start)
    _write(path, out)

    print(f"\n| attack | ours robust % | ART robust % | agree % | only ours broke | only ART "
          f"broke | ours s | ART s |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['attack']} | {100 * r['ours']:.1f} | {100 * r['art']:.1f} | "
              f"{100 * r['agree']:.1f} | {r['only_ours_broke']} | {r['only_art_broke']} | "
              f"{r['ours_seconds']:.1f} | {r['art_seconds']:.1f} |")
    if cascade:
        print(f"\ncascade, {cascade['examples']} digits, {cascade['seconds']:.0f} s: " + ", ".join(
            f"{k} {100 * v:.1f}% ({cascade['attack_seconds'].get(k, 0):.0f} s)"
            for k, v in cascade["accuracy"].items()))
    print(f"load average {load}; wrote {path}")


if __name__ == "__main__":
    app.run(main)

"""Helper for tests/test_distribute.py: runs in a fresh Python process.

  python tests/distribute_worker.py mirrored --teacher=T.keras --out=DIR
      Two logical CPU devices; a short Deadwood run with MirroredStrategy and the
      same run on one device, same batches; both .keras round trips and a
      BackupAndRestore resume across the two. Writes DIR/mirrored.json.
  TF_CONFIG=... python tests/distribute_worker.py multi_worker --teacher=T.keras --out=DIR
      One worker of a MultiWorkerMirroredStrategy run. The chief writes
      DIR/model.keras, the other workers DIR/workertemp_<i>/model.keras (the Keras
      multi-worker pattern); every worker writes DIR/worker_<i>.npz.

Not a test module itself (the logical devices must be set before TensorFlow
initialises its devices, so the test spawns this script).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

NUM_EXAMPLES = 453          # 7 full batches of 64 and one of 5: split 3 / 2 over two replicas
BATCH = 64
EPOCHS = 3
DUAL_STEP = 0.2
SPARSITY = 0.8


def data():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype("float32")[..., None]
    y = d.target.astype("int64")
    order = np.random.default_rng(0).permutation(len(x))
    return x[order][:NUM_EXAMPLES], y[order][:NUM_EXAMPLES]


def dataset(x, y):
    """(x, y, index) batches in a fixed order (the same for every run)."""
    ds = tf.data.Dataset.from_tensor_slices((x, y, np.arange(len(x), dtype="int64")))
    return ds.batch(BATCH)


def build(teacher_path):
    import keras

    import deadwood_tf as dw

    keras.utils.set_random_seed(0)
    teacher = keras.models.load_model(teacher_path)
    # L2 fast gradient: x + eps * g / ||g||, continuous in the gradient. FGSM's sign is
    # not: where a pixel's gradient is within round-off of zero, the two-replica run
    # (which sums half-batch weight gradients) can flip it, and 24 steps of dual ascent
    # carry that flip far past any tolerance (seen: 0.058 on one machine, 5e-7 on another).
    model = dw.DeadwoodModel(dw.prune_model(teacher), teacher, attack=dw.FGSM(0.5, norm="l2"),
                             num_examples=NUM_EXAMPLES)
    # SGD: Adam's g / sqrt(v) would amplify float round-off on tiny gradients,
    # which is not what this comparison is about.
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), metrics=["accuracy"])
    return model


def callbacks(extra=()):
    import deadwood_tf as dw

    # The cut is made once, before training, on the teacher's weights, which are the same
    # bits in every run: a cut after an epoch ranks weights that round-off has already
    # moved, and a weight at the threshold could fall on either side. Dual step 0.2, not
    # the default 3.0: the multipliers add up step x violation, so a larger step scales
    # the violations' float round-off; a lost or doubled update would still differ by
    # step x that example's violation (about 1e-2).
    return [dw.DeadwoodCallback(SPARSITY, prune_epoch=0, schedule="one_shot",
                                dual_step_size=DUAL_STEP, verbose=0), *extra]


def state(model) -> dict:
    """Every piece of Deadwood state, as NumPy arrays keyed by a stable name."""
    import deadwood_tf as dw

    out = {}
    for i, (weight, mask) in enumerate(dw.pruned_weights(model)):
        out[f"mask/{i}"] = np.asarray(mask.numpy())
        out[f"weight/{i}"] = np.asarray(weight.numpy())
    for name in ("fidelity_multipliers", "robustness_multipliers", "fidelity_violations",
                 "robustness_violations", "violation_counts"):
        out[name] = np.asarray(getattr(model, name).numpy())
    return out


def compare(a: dict, b: dict) -> dict:
    keys = sorted(a)
    assert keys == sorted(b), (keys, sorted(b))
    masks = [k for k in keys if k.startswith("mask/")]
    weights = [k for k in keys if k.startswith("weight/")]
    mult = ["fidelity_multipliers", "robustness_multipliers"]
    buffers = ["fidelity_violations", "robustness_violations"]
    diff = lambda ks: max(float(np.max(np.abs(a[k] - b[k]))) for k in ks)  # noqa: E731
    return {
        "masks_equal": all(np.array_equal(a[k], b[k]) for k in masks),
        "mask_mismatches": int(sum(np.sum(a[k] != b[k]) for k in masks)),
        "max_multiplier_diff": diff(mult),
        "max_weight_diff": diff(weights),
        "max_violation_diff": diff(buffers),
        "counts_equal": bool(np.array_equal(a["violation_counts"], b["violation_counts"])),
        "all_exact": all(np.array_equal(a[k], b[k]) for k in keys),
    }


class _Capture:
    """A callback keeping the state right after BackupAndRestore restored it."""

    def __new__(cls):
        import keras

        class Capture(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.state = state(self.model)
                self.initial_epoch = int(getattr(self.model, "_initial_epoch", 0) or 0)

        return Capture()


class _DualCheck:
    """Two callbacks around DeadwoodCallback: `before` keeps the multipliers and the
    epoch's violations just before the dual step, `after` the multipliers just after;
    `worst()` is the largest gap between the step taken and the method's formula,
    `clip(lam + step * v / count, 0, max)`, recomputed in NumPy from the run's own
    violations (so it holds whatever the trajectory)."""

    def __init__(self):
        import keras

        check = self
        self.gaps, self.seen_once = [], []

        class Before(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                m = self.model
                check.prev = {k: np.asarray(getattr(m, k).numpy()) for k in (
                    "fidelity_multipliers", "robustness_multipliers", "fidelity_violations",
                    "robustness_violations", "violation_counts")}

        class After(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                p, m = check.prev, self.model
                count = np.maximum(p["violation_counts"], np.float32(1))
                check.seen_once.append(bool(np.array_equal(
                    p["violation_counts"], np.ones(NUM_EXAMPLES, "float32"))))
                for kind in ("fidelity", "robustness"):
                    want = np.clip(p[f"{kind}_multipliers"] + np.float32(DUAL_STEP) * (
                        p[f"{kind}_violations"] / count), 0, np.float32(10.0))
                    got = np.asarray(getattr(m, f"{kind}_multipliers").numpy())
                    check.gaps.append(float(np.max(np.abs(got - want))))

        self.before, self.after = Before(), After()


def mirrored(args):
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras

    x, y = data()
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    result = {"replicas": strategy.num_replicas_in_sync}

    one = build(args.teacher)
    t0 = time.time()
    one.fit(dataset(x, y), epochs=EPOCHS, callbacks=callbacks(), verbose=0)
    result["one_device_s"] = time.time() - t0

    with strategy.scope():
        two = build(args.teacher)
    t0 = time.time()
    # A distributed dataset, as a user of tf.distribute would pass it.
    dual = _DualCheck()
    two.fit(strategy.experimental_distribute_dataset(dataset(x, y)), epochs=EPOCHS,
            callbacks=[dual.before, *callbacks(), dual.after], verbose=0)
    result["mirrored_s"] = time.time() - t0
    s1, s2 = state(one), state(two)
    result["mirrored_vs_one_device"] = compare(s1, s2)
    result["dual_step_max_gap"] = max(dual.gaps)
    result["every_example_once_per_epoch"] = all(dual.seen_once) and len(dual.seen_once) == EPOCHS
    result["counts_all_one"] = bool(np.array_equal(s2["violation_counts"],
                                                   np.ones(NUM_EXAMPLES, "float32")))
    result["sparsity"] = [float(__import__("deadwood_tf").sparsity_report(m).sparsity)
                          for m in (one, two)]
    # The replicas' own copies must agree too (masks and buffers per device).
    per_replica = []
    for var in [m for _, m in __import__("deadwood_tf").pruned_weights(two)] + [
            two.violation_counts, two.fidelity_multipliers]:
        copies = [np.asarray(v.numpy()) for v in var.value.values]
        per_replica.append(all(np.array_equal(copies[0], c) for c in copies[1:])
                           and len(copies) == 2)
    result["replica_copies_identical"] = all(per_replica)

    # .keras: distributed -> one device, one device -> distributed.
    path2 = os.path.join(args.out, "mirrored.keras")
    path1 = os.path.join(args.out, "one_device.keras")
    two.save(path2)
    one.save(path1)
    loaded = keras.models.load_model(path2)
    result["keras_mirrored_to_one_device"] = compare(s2, state(loaded))
    with strategy.scope():
        loaded2 = keras.models.load_model(path1)
    result["keras_one_device_to_mirrored"] = compare(s1, state(loaded2))
    loaded2.fit(strategy.experimental_distribute_dataset(dataset(x, y)), epochs=1,
                callbacks=callbacks(), verbose=0)  # trains on after the restore
    result["trains_after_restore"] = bool(np.all(np.isfinite(loaded2.fidelity_multipliers.numpy())))

    # BackupAndRestore: a mirrored run's backup resumes on one device, and back.
    for name, make_first, make_second in (
            ("backup_mirrored_to_one_device", lambda: strategy.scope(), None),
            ("backup_one_device_to_mirrored", None, lambda: strategy.scope())):
        import contextlib

        backup_dir = os.path.join(args.out, name)
        with (make_first or contextlib.nullcontext)():
            first = build(args.teacher)
        first.fit(dataset(x, y), epochs=2, verbose=0, callbacks=callbacks(
            [keras.callbacks.BackupAndRestore(backup_dir, delete_checkpoint=False)]))
        with (make_second or contextlib.nullcontext)():
            second = build(args.teacher)
        capture = _Capture()
        second.fit(dataset(x, y), epochs=3, verbose=0, callbacks=[
            keras.callbacks.BackupAndRestore(backup_dir), capture] + callbacks())
        result[name] = {**compare(state(first), capture.state),
                        "initial_epoch": capture.initial_epoch}

    with open(os.path.join(args.out, "mirrored.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))


def multi_worker(args):
    # First, before anything else touches TensorFlow's runtime.
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    import keras

    keras.config.disable_traceback_filtering()  # full tracebacks in the test's log

    task = json.loads(os.environ["TF_CONFIG"])["task"]
    index = int(task["index"])
    chief = index == 0 and task["type"] in ("worker", "chief")
    x, y = data()
    with strategy.scope():
        model = build(args.teacher)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    t0 = time.time()
    model.fit(dataset(x, y).with_options(options), epochs=EPOCHS, callbacks=callbacks(),
              verbose=0)
    seconds = time.time() - t0
    # The Keras multi-worker pattern: every worker saves, only the chief where it is read.
    out = args.out if chief else os.path.join(args.out, f"workertemp_{index}")
    os.makedirs(out, exist_ok=True)
    model.save(os.path.join(out, "model.keras"))
    np.savez(os.path.join(args.out, f"worker_{index}.npz"), **state(model))
    with open(os.path.join(args.out, f"worker_{index}.json"), "w") as f:
        json.dump({"index": index, "chief": chief, "fit_s": seconds,
                   "replicas": strategy.num_replicas_in_sync}, f)
    print(f"worker {index}: done in {seconds:.1f}s", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("mirrored", "multi_worker"))
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    {"mirrored": mirrored, "multi_worker": multi_worker}[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())

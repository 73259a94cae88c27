"""Training-step time of the masks: a plain model against the same model pruned
(`prune_model`, cut to 90%: every masked weight carries a `MaskConstraint` that
the optimizer applies after each step), and adversarial training against
Deadwood with the same attack, on the benchmark's CNN (225k parameters).

  python benchmarks/experiments/benchmark_overhead.py --steps=40 --rounds=5 --batch_size=128

Plain and pruned models are timed in alternating epochs in one process, so
load from other jobs falls on both alike; the overhead is the median over the
rounds of (pruned / plain - 1), in wall time and in process CPU time. Prints a
Markdown table of milliseconds per step.
"""

import os
import platform
import time

import numpy as np
from absl import app, flags

_STEPS = flags.DEFINE_integer("steps", 40, "Training steps per timed epoch.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Alternating timed epochs per model "
                               "(after one warm-up epoch each).")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_ADVERSARIAL = flags.DEFINE_bool("adversarial", True,
                                 "Also time PGD-5 adversarial training and Deadwood.")


def _forward_macs(model) -> int:
    """Multiply-accumulates of one example's forward pass through the Conv/Dense layers."""
    import keras

    macs = 0
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        size = int(np.prod(kernel.shape))
        if isinstance(layer, keras.layers.Conv2D):  # once per output position
            size *= int(np.prod(layer.output.shape[1:3]))
        macs += size
    return macs


def main(argv):
    del argv
    import keras
    import tensorflow as tf

    import deadwood_tf as dw
    from deadwood_tf import models
    from deadwood_tf.adversarial import AdversarialTraining

    n = _STEPS.value * _BATCH.value
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (n, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, n)
    attack = dw.PGD(0.2, steps=5, step_size=0.05)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    keras.utils.set_random_seed(0)
    base = models.build_model("small_cnn", (28, 28, 1), 10, width=32)

    def pruned():
        model = dw.prune_model(base)
        dw.apply_sparsity(model, 0.9)
        return model

    def natural(model):
        model.compile(keras.optimizers.Adam(1e-3), ce)
        return model

    def adversarial(model):
        model = AdversarialTraining(model, attack)
        model.compile(keras.optimizers.Adam(1e-3))
        return model

    def deadwood():
        model = dw.DeadwoodModel(pruned(), base, attack=attack)
        model.compile(keras.optimizers.Adam(1e-3))
        return model

    def epoch_ms(model):
        """Wall and process CPU milliseconds per step (CPU time, summed over
        threads, moves less than wall time when other jobs share the machine)."""
        start, cpu = time.perf_counter(), time.process_time()
        model.fit(x, y, batch_size=_BATCH.value, epochs=1, verbose=0)
        return (1000 * (time.perf_counter() - start) / _STEPS.value,
                1000 * (time.process_time() - cpu) / _STEPS.value)

    pairs = [("natural training", natural(keras.models.clone_model(base)), natural(pruned()))]
    if _ADVERSARIAL.value:
        pairs.append(("PGD-5 adversarial training", adversarial(keras.models.clone_model(base)),
                      adversarial(pruned())))
    rows = []
    for name, plain, masked in pairs:
        epoch_ms(plain), epoch_ms(masked)  # warm-up: tracing
        times = np.array([(epoch_ms(plain), epoch_ms(masked)) for _ in range(_ROUNDS.value)])
        # times[round, plain|masked, wall|cpu]
        p, m = np.median(times[:, 0], axis=0), np.median(times[:, 1], axis=0)
        overhead = 100 * np.median(times[:, 1] / times[:, 0] - 1, axis=0)
        rows += [(f"plain model, {name}", p, None),
                 (f"pruned model (masks), {name}", m, overhead)]
        print(f"{name}: wall {p[0]:.1f} -> {m[0]:.1f} ms ({overhead[0]:+.1f}%), CPU "
              f"{p[1]:.1f} -> {m[1]:.1f} ms ({overhead[1]:+.1f}%); CPU per round: "
              f"{[f'{v:+.1f}%' for v in 100 * (times[:, 1, 1] / times[:, 0, 1] - 1)]}",
              flush=True)
    if _ADVERSARIAL.value:
        model = deadwood()
        epoch_ms(model)
        rows.append(("DeadwoodModel (PGD-5, teacher pass, multipliers)",
                     np.median([epoch_ms(model) for _ in range(_ROUNDS.value)], axis=0), None))

    # A count no other job can disturb: the masks add one multiply (and one
    # assign) per masked weight per step; the step does about 3 x 2 x MACs
    # floating-point operations per example (forward, and backward twice).
    masked = sum(int(np.prod(w.shape)) for w, _ in dw.pruned_weights(pairs[0][2]))
    step_flops = 6 * _forward_macs(base) * _BATCH.value
    print(f"\nmask work per step: {masked} multiplies against ~{step_flops / 1e9:.2f} GFLOP "
          f"of the step ({100 * masked / step_flops:.3f}%); no work in the forward pass")

    print(f"\n{platform.platform()}, {os.cpu_count()} CPUs, TF {tf.__version__}, "
          f"batch {_BATCH.value}, {_STEPS.value} steps x {_ROUNDS.value} alternating rounds "
          "(median)\n")
    print("| training | wall ms / step | CPU ms / step | masks' overhead, wall / CPU "
          "(median of paired rounds) |\n|---|---|---|---|")
    for name, ms, overhead in rows:
        extra = "" if overhead is None else f"{overhead[0]:+.1f}% / {overhead[1]:+.1f}%"
        print(f"| {name} | {ms[0]:.1f} | {ms[1]:.1f} | {extra} |")


if __name__ == "__main__":
    app.run(main)

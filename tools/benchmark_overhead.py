"""Training-step time of the masks: a plain model against the same model pruned
(`prune_model`, cut to 90%: every masked weight carries a `MaskConstraint` that
the optimizer applies after each step), and adversarial training against
Deadwood with the same attack, on the benchmark's CNN (225k parameters).

  python tools/benchmark_overhead.py --steps=40 --rounds=5 --batch_size=128

Plain and pruned models are timed in alternating epochs in one process, so
load from other jobs falls on both alike; the overhead is the median over the
rounds of (pruned / plain - 1). Prints a Markdown table of milliseconds per step.
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
        start = time.perf_counter()
        model.fit(x, y, batch_size=_BATCH.value, epochs=1, verbose=0)
        return 1000 * (time.perf_counter() - start) / _STEPS.value

    pairs = [("natural training", natural(keras.models.clone_model(base)), natural(pruned()))]
    if _ADVERSARIAL.value:
        pairs.append(("PGD-5 adversarial training", adversarial(keras.models.clone_model(base)),
                      adversarial(pruned())))
    rows = []
    for name, plain, masked in pairs:
        epoch_ms(plain), epoch_ms(masked)  # warm-up: tracing
        times = [(epoch_ms(plain), epoch_ms(masked)) for _ in range(_ROUNDS.value)]
        p, m = np.median([t[0] for t in times]), np.median([t[1] for t in times])
        overhead = 100 * np.median([b / a - 1 for a, b in times])
        rows += [(f"plain model, {name}", p, ""), (f"pruned model (masks), {name}", m,
                                                   f"{overhead:+.1f}%")]
        print(f"{name}: plain {p:.1f} ms, masks {m:.1f} ms, overhead {overhead:+.1f}% "
              f"(per round: {[f'{100 * (b / a - 1):+.1f}%' for a, b in times]})", flush=True)
    if _ADVERSARIAL.value:
        model = deadwood()
        epoch_ms(model)
        rows.append(("DeadwoodModel (PGD-5, teacher pass, multipliers)",
                     np.median([epoch_ms(model) for _ in range(_ROUNDS.value)]), ""))

    print(f"\n{platform.platform()}, {os.cpu_count()} CPUs, TF {tf.__version__}, "
          f"batch {_BATCH.value}, {_STEPS.value} steps x {_ROUNDS.value} alternating rounds "
          "(median)\n")
    print("| training | ms / step | masks' overhead (median of paired rounds) |\n|---|---|---|")
    for name, ms, overhead in rows:
        print(f"| {name} | {ms:.1f} | {overhead} |")


if __name__ == "__main__":
    app.run(main)

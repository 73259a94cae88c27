"""Training-step time: plain vs wrapped (masked) model, and adversarial training
vs Deadwood with the same attack, on the benchmark's CNN (225k parameters).

  python tools/benchmark_overhead.py --steps=60 --batch_size=128

Prints a Markdown table of milliseconds per step (median of the timed epochs).
"""

import os
import platform
import time

import numpy as np
from absl import app, flags

_STEPS = flags.DEFINE_integer("steps", 60, "Training steps per timed epoch.")
_EPOCHS = flags.DEFINE_integer("epochs", 3, "Timed epochs (after one warm-up epoch).")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch size.")


class _Timer:
    def __init__(self):
        import keras

        class T(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.times = []

            def on_epoch_begin(self, epoch, logs=None):
                self.t = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.times.append(time.perf_counter() - self.t)

        self.callback = T()

    def ms_per_step(self, steps):
        return 1000 * float(np.median(self.callback.times[1:])) / steps


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
    epochs = _EPOCHS.value + 1
    attack = dw.PGD(0.2, steps=5, step_size=0.05)
    rows = []

    def timed(name, model, fit_kwargs):
        timer = _Timer()
        model.fit(x, y, batch_size=_BATCH.value, epochs=epochs, verbose=0,
                  callbacks=[timer.callback, *fit_kwargs.pop("callbacks", [])], **fit_kwargs)
        rows.append((name, timer.ms_per_step(_STEPS.value)))
        print(f"{name}: {rows[-1][1]:.1f} ms/step", flush=True)

    keras.utils.set_random_seed(0)
    base = models.build_model("small_cnn", (28, 28, 1), 10, width=32)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    plain = keras.models.clone_model(base)
    plain.compile(keras.optimizers.Adam(1e-3), ce)
    timed("plain model, natural training", plain, {})

    wrapped = dw.prune_model(base)
    dw.apply_sparsity(wrapped, 0.9)
    wrapped.compile(keras.optimizers.Adam(1e-3), ce)
    timed("wrapped model (masks), natural training", wrapped, {})

    at = AdversarialTraining(keras.models.clone_model(base), attack)
    at.compile(keras.optimizers.Adam(1e-3))
    timed("plain model, PGD-5 adversarial training", at, {})

    at_wrapped = AdversarialTraining(dw.prune_model(base), attack)
    at_wrapped.compile(keras.optimizers.Adam(1e-3))
    timed("wrapped model, PGD-5 adversarial training", at_wrapped, {})

    deadwood = dw.DeadwoodModel(dw.prune_model(base), base, attack=attack)
    deadwood.compile(keras.optimizers.Adam(1e-3))
    timed("DeadwoodModel (PGD-5, teacher pass, multipliers)", deadwood,
          {"callbacks": [dw.DeadwoodCallback(0.9, prune_epoch=1, verbose=0)]})

    print(f"\n{platform.platform()}, {os.cpu_count()} CPUs, TF {tf.__version__}, "
          f"batch {_BATCH.value}, "
          f"{_STEPS.value} steps x {_EPOCHS.value} timed epochs (median)\n")
    print("| training | ms / step |\n|---|---|")
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} |")


if __name__ == "__main__":
    app.run(main)

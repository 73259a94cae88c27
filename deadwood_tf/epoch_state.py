"""A fit that survives being stopped: the model's and optimizer's state after every epoch.

`EpochState(folder)` is a Keras callback. After each epoch it writes, atomically,
the model's weights, the optimizer's variables (its step count included, so a
learning-rate schedule resumes where it was) and the epoch reached, plus any
`extra` JSON the caller wants kept (a per-epoch check's history, say).
`restore(model, optimizer)` puts them back and returns the epoch to resume
from (`fit(..., initial_epoch=...)`); 0 when there is nothing to resume.

A resumed fit is the same training from the same point, but not the same
numbers as an uninterrupted one: random draws (attack starts, shuffles,
augmentation) after a restart come from a fresh stream.

>>> import tempfile, keras, numpy as np
>>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
>>> model.compile(keras.optimizers.Adam(1e-2), "mse")
>>> folder = tempfile.mkdtemp()
>>> _ = model.fit(np.ones((8, 3)), np.zeros((8, 2)), epochs=2, verbose=0,
...               callbacks=[EpochState(folder)])
>>> again = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
>>> again.compile(keras.optimizers.Adam(1e-2), "mse")
>>> EpochState(folder).restore(again, again.optimizer)
2
>>> int(again.optimizer.iterations.numpy())
2
>>> bool(np.allclose(again.get_weights()[0], model.get_weights()[0]))
True
"""

from __future__ import annotations

import json
import os

import keras
import numpy as np


class EpochState(keras.callbacks.Callback):
    """Writes the fit's state to `folder` after every epoch; see the module docstring.

    Args:
      folder: where the state goes (created if missing).
      extra: a function `() -> dict` of JSON values stored with each epoch's state,
        returned by `restore` in `self.extra`.
      model: the model whose weights are kept; default the model `fit` runs
        (give the wrapped model when a wrapper such as `AdversarialTraining` is fit).
    """

    def __init__(self, folder: str, extra=None, model=None):
        super().__init__()
        if not isinstance(folder, str) or not folder:
            raise ValueError(f"Invalid value for argument `folder`: expected a directory path. "
                             f"Received: folder={folder!r}")
        self.folder, self._extra, self._target = folder, extra, model
        self.extra = {}

    def _paths(self):
        return (os.path.join(self.folder, "model.weights.h5"),
                os.path.join(self.folder, "optimizer.npz"),
                os.path.join(self.folder, "state.json"))

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.folder, exist_ok=True)
        weights, optimizer, state = self._paths()
        target = self._target or self.model
        # Weights and optimizer first, the epoch last: a state.json always names
        # an epoch whose files are complete.
        target.save_weights(weights + ".tmp.weights.h5")
        os.replace(weights + ".tmp.weights.h5", weights)
        with open(optimizer + ".tmp", "wb") as f:
            np.savez(f, *[np.asarray(v) for v in self.model.optimizer.variables])
        os.replace(optimizer + ".tmp", optimizer)
        with open(state + ".tmp", "w") as f:
            json.dump({"epoch": epoch + 1, "extra": self._extra() if self._extra else {}}, f)
        os.replace(state + ".tmp", state)

    def restore(self, model, optimizer) -> int:
        """Loads the last epoch's state into `model` and `optimizer` (built here on
        `model.trainable_variables`); returns the epoch to resume from, 0 if none."""
        weights, opt_path, state = self._paths()
        if not os.path.exists(state):
            return 0
        with open(state) as f:
            saved = json.load(f)
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        model.load_weights(weights)
        with np.load(opt_path) as arrays:
            values = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
        if len(values) != len(optimizer.variables):
            raise ValueError(f"Invalid state in {self.folder!r}: {len(values)} optimizer "
                             f"variables saved, the optimizer has {len(optimizer.variables)}.")
        for variable, value in zip(optimizer.variables, values):
            variable.assign(value)
        self.extra = saved.get("extra", {})
        return int(saved["epoch"])

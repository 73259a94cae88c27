"""Adversarial perturbations in embedding space, for models whose inputs are token ids.

Token ids cannot be nudged by a small amount, so the usual practice for
adversarial training of text models (Miyato et al. 2017, FreeLB, ...) is to
perturb the output of the embedding layer: `EmbeddingAttack(PGD(...),
layer="token_embedding")` runs the gradient attack on `delta`, added to what
the named layer returns when it looks up integer ids, within the attack's L2
or L-inf ball of radius `eps` (no clipping: embedding space has no range).
It plugs into `DeadwoodModel(attack=...)` as any attack does: the robustness
constraint then holds the student's loss on the perturbed embeddings down,
with the same multipliers and the same cut.

What it measures: accuracy when every example's token embeddings may move by
`eps`, a smoothness of the model around its inputs; not robustness to a
choice of other tokens (a word-substitution attack), which it bounds from
neither side.

    attack = dw.EmbeddingAttack(dw.PGD(0.5, steps=5, norm="l2"), layer="token_embedding")
    model = dw.DeadwoodModel(dw.prune_model(teacher), teacher, attack=attack)
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf

from deadwood_tf import gradient_attacks as attacks_lib
from deadwood_tf import prune_registry


def _find_layer(model, name):
    layers = prune_registry.sublayers(model)
    found = [l for l in layers if l.name == name]
    if not found:
        names = sorted({l.name for l in layers
                        if "embed" in l.name.lower() or isinstance(l, keras.layers.Embedding)})
        raise ValueError(
            f"Invalid value for argument `layer`: the model has no layer named {name!r}. "
            f"Its embedding-like layers: {names}. Received: layer={name!r}")
    return found[0]


class EmbeddingPerturbation:
    """What `EmbeddingAttack` returns: the inputs and the embedding offset."""

    def __init__(self, x, delta):
        self.x, self.delta = x, delta


@keras.saving.register_keras_serializable(package="deadwood_tf")
class EmbeddingAttack(attacks_lib.Attack):
    """A gradient attack (FGSM or PGD, which sets eps, norm and steps) on the
    output of the model's layer named `layer`, where it looks up integer ids.

    The attack is bound to the model it was last checked against
    (`check_inputs`, which `DeadwoodModel` and `evaluate_robustness` call):
    that model's layer `layer` is the one perturbed.
    """

    in_graph = True

    def __init__(self, attack, layer):
        if isinstance(attack, dict):
            attack = keras.saving.deserialize_keras_object(attack)
        if not isinstance(attack, (attacks_lib.FGSM, attacks_lib.PGD)):
            raise ValueError(
                "Invalid value for argument `attack`: expected a deadwood_tf FGSM or PGD "
                f"(the gradient attack run in embedding space). Received: attack={attack!r}")
        if not isinstance(layer, str) or not layer:
            raise ValueError("Invalid value for argument `layer`: expected the name of the "
                             f"model's embedding layer. Received: layer={layer!r}")
        super().__init__(attack.eps, attack.norm, clip_min=None, clip_max=None)
        self.attack, self.layer = attack, layer
        self._bound_layer = None

    @property
    def name(self) -> str:
        return f"{self.attack.name}@{self.layer}"

    @property
    def description(self) -> str:
        return (f"{self.attack.name}: {self.attack.norm_name} ball of radius {self.eps:g} "
                f"around the output of layer {self.layer!r} (embedding space)")

    def check_inputs(self, model) -> None:
        self._bound_layer = _find_layer(model, self.layer)

    @contextlib.contextmanager
    def _offset(self, delta):
        """While active, the bound layer adds `delta` to its lookups of integer ids
        (`delta` None: records the lookups' shape instead)."""
        layer, original, seen = self._bound_layer, self._bound_layer.call, {}

        def call(inputs, *args, **kwargs):
            out = original(inputs, *args, **kwargs)
            ids = tf.nest.flatten(inputs)[0]
            if not getattr(ids, "dtype", tf.float32).is_integer:
                return out  # e.g. a reversible embedding's projection back to the vocabulary
            seen["shape"], seen["dtype"] = tf.shape(out), out.dtype
            return out if delta is None else out + tf.cast(delta, out.dtype)

        layer.call = call  # shadows the class's call, as gradient_attacks._softmax_removed does
        try:
            yield seen
        finally:
            del layer.call

    def __call__(self, model_fn, x, y=None):
        if self._bound_layer is None:
            raise ValueError(f"{self!r} is not bound to a model: call "
                             "attack.check_inputs(model) first (DeadwoodModel does).")
        with self._offset(None) as seen:
            model_fn(x)
        if "shape" not in seen:
            raise ValueError(f"Invalid value for argument `layer`: layer {self.layer!r} looked "
                             "up no integer ids in a call of the model.")
        zeros = tf.zeros(seen["shape"], tf.float32)

        def on_delta(delta):
            with self._offset(delta):
                return model_fn(x)

        delta = self.attack.perturb(on_delta, zeros, y, None, None)
        return EmbeddingPerturbation(x, tf.stop_gradient(delta))

    def run(self, fn, x_adv):
        with self._offset(x_adv.delta):
            return fn(x_adv.x)

    def get_config(self):
        return {"attack": keras.saving.serialize_keras_object(self.attack), "layer": self.layer}

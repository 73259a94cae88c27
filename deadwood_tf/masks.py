"""The masks: state attached to the prunable variables themselves.

Each pruned weight `W` gets a non-trainable mask variable `M` (same shape and
dtype, values 0 or 1), and `W.constraint` becomes `MaskConstraint(M, inner=...)`.
Every Keras optimizer applies a variable's constraint after each step, so a
masked weight is put back to exactly zero whatever its gradient, momentum or
weight decay; a cut assigns `W * M` at once. The forward pass is the model's
own (no wrapper layer, no graph rebuild): it reads `W`, which is already zero
wherever `M` is. That is why any model can be pruned, subclassed and KerasHub
ones included.

A compiled training step keeps the constraints it was traced with, and under
JAX also the values of the variables the model does not carry through the
step as its own state, which the masks of a plain pruned model are: whatever
changes the masks or the constraints of a model calls `refresh_training` on it.

The mask is reached from the variable (`mask_of(w)`), never from a layer, so
the layers and their configs stay plain Keras: a pruned model saves as a plain
model (masked weights are zeros in the file). `keras.ops` only: no backend call.
"""

from __future__ import annotations

import keras
from keras import ops


class MaskConstraint(keras.constraints.Constraint):
    """`W -> inner(W) * M`: re-applies the mask after every optimizer step.

    Set on the variable only (never in a layer config), so it is never
    serialized; `deadwood_tf.prune.strip_pruning` removes it. Not a class a
    user builds: `prune_model` attaches it.
    """

    def __init__(self, mask, inner=None):
        self.mask = mask
        self.inner = inner

    def __call__(self, w):
        if self.inner is not None:
            w = self.inner(w)
        return w * ops.cast(self.mask, w.dtype)


def mask_of(variable):
    """The mask variable attached to `variable`, or None."""
    constraint = getattr(variable, "constraint", None)
    return constraint.mask if isinstance(constraint, MaskConstraint) else None


def attach_mask(variable, value=None):
    """Creates `variable`'s mask (all ones, or `value`) and applies it at once.

    Create it under the same `tf.distribute` strategy scope as the variable
    (Keras then makes both mirrored). Returns the mask variable.
    """
    if mask_of(variable) is not None:
        raise ValueError(f"Variable '{variable.path}' already carries a pruning mask.")
    mask = keras.Variable(
        initializer="ones" if value is None else ops.cast(value, variable.dtype),
        shape=variable.shape, dtype=variable.dtype, trainable=False,
        name=f"{variable.name}_mask")
    variable.constraint = MaskConstraint(mask, variable.constraint)
    if value is not None:
        apply_mask(variable)
    return mask


def detach_mask(variable):
    """Applies `variable`'s mask a last time and gives it back its own constraint."""
    constraint = variable.constraint
    if isinstance(constraint, MaskConstraint):
        apply_mask(variable)
        variable.constraint = constraint.inner


def apply_mask(variable, keep=None):
    """Sets the mask to `keep` (if given) and the variable to `W * M`."""
    mask = mask_of(variable)
    if keep is not None:
        mask.assign(ops.cast(keep, mask.dtype))
    variable.assign(variable * ops.cast(mask, variable.dtype))


def refresh_training(model, constraints_changed=False):
    """Makes `model`'s next training step use its masks as they are now.

    Call it after the masks' values changed (a cut) or, with
    `constraints_changed=True`, after masks were attached or detached. A
    compiled step traced before is dropped (`make_train_function(force=True)`;
    `fit` picks the new one up at its next batch) when it holds stale state:
    always when the constraints changed; after a cut only on JAX, where a jitted
    step holds the masks as constants unless the model tracks them as its own
    variables (a `DeadwoodModel` does). TensorFlow's step reads them by
    reference and is kept.
    """
    if getattr(model, "train_function", None) is None:
        return
    if not constraints_changed:
        if keras.backend.backend() != "jax":
            return
        tracked = {id(v) for v in model.non_trainable_variables}
        if all(id(mask_of(v)) in tracked for v in model.trainable_variables
               if mask_of(v) is not None):
            return
    model.make_train_function(force=True)

"""The primal step of Deadwooding: a `keras.Model` whose `train_step` minimises
the Lagrangian of METHOD.md with the multipliers held fixed.

    L = rho * Omega(w)
        + mean_i [ lam_i * max(0, c_i - alpha) + mu_i * max(0, r_i - beta) ]
        + gamma * CE(y, S(x))

with `c_i` the distillation gap to the frozen teacher on `x_i`, `r_i` the
adversarial loss on `x~_i` (made against the student by the `attack`), and
`Omega` the L1 norm of the surviving weights over their count. Each example's
violations are written to non-trainable buffers; `DeadwoodCallback` turns them
into the dual step at each epoch end and makes the global cut.

The model wires together what lives elsewhere: the Lagrangian's terms and the
dual update (`lagrangian`), the multipliers and violation buffers
(`multipliers`), how example indices reach the step (`example_index`) and
what changes with several replicas (`replicas`).
"""

from __future__ import annotations

import warnings

import numpy as np
import keras
import tensorflow as tf
from absl import logging

from deadwood_tf import channel_groups as channel_groups_lib
from deadwood_tf import checks
from deadwood_tf import attacks as attacks_lib
from deadwood_tf import compat
from deadwood_tf import example_index
from deadwood_tf import lagrangian
from deadwood_tf import masks, prune, replicas
from deadwood_tf import multipliers as multipliers_lib
from deadwood_tf import outputs as outputs_lib
from deadwood_tf.embedding_attack import EmbeddingPerturbation

_REQUIRED = object()
_UNSET = object()
ROBUST_TARGETS = ("label", "teacher")
BATCH_NORM_MODES = ("joint", "separate")
# `Omega`: the normalised L1 of the masked weights, or the group lasso over the
# student's channel groups (structured Deadwood).
SPARSITY_TERMS = ("l1", "group_lasso")
# The old `pattern=` values, by the sparsity term they chose.
_PATTERN_TERMS = {None: "l1", "channel": "group_lasso"}
# Metrics that only the training step produces (not shown by evaluate()).
TRAINING_METRICS = ("fidelity_violation", "robustness_violation", "l1", "adv_accuracy",
                    "other_outputs_loss")


def _check_number(value, name, low=0.0, low_inclusive=True):
    try:
        v = float(value)
        ok = not isinstance(value, bool) and np.isfinite(v) and (v >= low if low_inclusive else v > low)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        rel = ">=" if low_inclusive else ">"
        raise ValueError(
            f"Invalid value for argument `{name}`: expected a finite number {rel} {low:g}. "
            f"Received: {name}={value!r}"
        )
    return v


def _check_choice(value, name, choices):
    if value not in choices:
        raise ValueError(f"Invalid value for argument `{name}`: expected one of {choices}. "
                         f"Received: {name}={value!r}")
    return value


def sparsity_term_of(sparsity_term="l1", pattern=_UNSET) -> str:
    """The sparsity term `DeadwoodModel` takes, from `sparsity_term` or the old
    `pattern` argument (None: "l1"; "channel": "group_lasso"), which still works
    for one release with a DeprecationWarning."""
    if pattern is _UNSET:
        return _check_choice(sparsity_term, "sparsity_term", SPARSITY_TERMS)
    if pattern not in _PATTERN_TERMS:
        raise ValueError(f"Invalid value for argument `pattern`: expected one of "
                         f"{tuple(_PATTERN_TERMS)}. Received: pattern={pattern!r}")
    warnings.warn(
        "DeadwoodModel(pattern=) is now `sparsity_term`: pattern=None is "
        "sparsity_term='l1', pattern='channel' is sparsity_term='group_lasso'; `pattern` "
        "goes in the next release.", DeprecationWarning, stacklevel=3)
    if sparsity_term not in ("l1", _PATTERN_TERMS[pattern]):
        raise ValueError(
            "Invalid values for arguments `sparsity_term`, `pattern`: they disagree; pass "
            f"`sparsity_term` only. Received: sparsity_term={sparsity_term!r}, "
            f"pattern={pattern!r}")
    return _PATTERN_TERMS[pattern]


def _check_models(student, teacher, attack):
    prune.check_keras_model(student, "student")
    prune.check_keras_model(teacher, "teacher")
    if attack is _REQUIRED:
        raise TypeError(
            "Missing argument `attack`: pass a deadwood_tf.attacks object such as "
            "PGD(eps=0.3, steps=7), or attack=None to prune without the robustness constraint."
        )
    if attack is not None and not isinstance(attack, attacks_lib.Attack):
        raise ValueError(
            "Invalid value for argument `attack`: expected a deadwood_tf.attacks.Attack "
            f"(FGSM, PGD) or None. Received: attack={attack!r}"
        )
    if not prune.pruned_weights(student):
        raise ValueError(
            "Invalid value for argument `student`: it carries no pruning masks. "
            "Pass `deadwood_tf.prune_model(teacher)` as the student."
        )


def _check_num_examples(num_examples):
    if num_examples is not None and (
        isinstance(num_examples, bool) or not isinstance(num_examples, (int, np.integer))
        or num_examples < 1
    ):
        raise ValueError(
            "Invalid value for argument `num_examples`: expected an int >= 1 or None. "
            f"Received: num_examples={num_examples!r}"
        )


def _hyperparameters(fidelity_bound, robustness_bound, sparsity_weight, label_weight,
                     temperature, initial_multiplier) -> dict:
    return dict(
        fidelity_bound=_check_number(fidelity_bound, "fidelity_bound"),
        robustness_bound=_check_number(robustness_bound, "robustness_bound"),
        sparsity_weight=_check_number(sparsity_weight, "sparsity_weight"),
        label_weight=_check_number(label_weight, "label_weight"),
        temperature=_check_number(temperature, "temperature", low_inclusive=False),
        initial_multiplier=_check_number(initial_multiplier, "initial_multiplier"),
    )


def _sparsity_term(student, sparsity_term):
    """`fn() -> Omega` for the group lasso, None for the L1 term. Channel groups
    come from the student's graph: a graph they cannot be computed on is
    refused here, naming the layer, before training."""
    if sparsity_term != "group_lasso":
        return None
    return channel_groups_lib.group_lasso(student, channel_groups_lib.channel_groups(student))


class _InvalidDataCheck(keras.callbacks.Callback):
    """Raises from Python, after each batch, on the out-of-range labels or example
    indices that a step counted (see `DeadwoodModel.raise_on_invalid_data`)."""

    def on_train_batch_end(self, batch, logs=None):
        self.model.raise_on_invalid_data()

    def on_test_batch_end(self, batch, logs=None):
        self.model.raise_on_invalid_data()


class _Unsaved:
    """Holds a variable out of Keras' tracking: not a weight, not in saved files."""

    def __init__(self, variable):
        self.variable = variable


def masked_weight_positions(model) -> list:
    """Positions in `model.weights` (a DeadwoodModel: its student's) of the weights
    that carry masks: what `reattach_masks` needs to give them back."""
    student = prune.unwrap_deadwood(model)
    masked = {id(w) for w, _ in prune.pruned_weights(student)}
    return [i for i, w in enumerate(student.weights) if id(w) in masked]


def reattach_masks(student, positions) -> None:
    """Masks of ones on `student.weights[i]` for `i` in `positions`, unless it has
    masks already; loading a saved DeadwoodModel's weights then restores them."""
    if positions is not None and not prune.pruned_weights(student):
        weights = student.weights
        for i in positions:
            masks.attach_mask(weights[i])


@keras.saving.register_keras_serializable(package="deadwood_tf")
class DeadwoodModel(compat.TrainerOverrides, keras.Model):
    """Deadwood training of a pruned `student` against a frozen `teacher`.

    Args:
      student: the model to prune, from `prune_model(teacher)` (it carries masks).
      teacher: the trained dense model; it is never updated (only the
        student's weights are trainable here) and only run in inference mode.
      attack: a `deadwood_tf.attacks` object (e.g. `PGD(eps=0.3, steps=7)`)
        that makes the adversarial examples of the robustness constraint, or
        None for distillation-only pruning. Required.
      fidelity_bound: `alpha`, the distillation gap tolerated per example.
      robustness_bound: `beta`, the adversarial loss tolerated per example.
        Both default to 0 (every example's term stays active, weighted by its
        multiplier): on the benchmark, looser bounds (0.1, 0.5) left robustness
        below plain adversarial fine-tuning (docs/benchmarks.md).
      sparsity_weight: `rho`, weight of the normalised L1 term. It lives in the
        non-trainable variable `sparsity_weight_variable`, so a callback may
        change it during training (`DeadwoodCallback(finetune_sparsity_weight=)`).
      label_weight: `gamma`, weight of plain cross-entropy on clean inputs.
      temperature: `tau` of the distillation terms.
      robust_target: "label" (default): `r_i` is the cross-entropy of the
        student on `x~_i` against `y_i`; "teacher": `r_i` is the distillation
        gap between the teacher on `x_i` and the student on `x~_i`.
      initial_multiplier: starting value of every multiplier.
      num_examples: size of the training set, for per-example multipliers.
        Inferred by `fit(x, y)` from arrays; required when a tf.data input
        yields `(x, y, index)`.
      from_logits: whether the models output logits; by default detected (a
        final softmax is skipped to recover exact logits).
      batch_norm: "separate" (default): clean and adversarial inputs go
        through the student in two passes, each normalised by its own batch's
        statistics; "joint": one pass over both (one set of batch-norm
        statistics). On a batch-norm model separate passes scored higher, clean
        and under PGD (docs/benchmarks.md); without batch norm both compute
        the same. A model with several outputs, or an attack in embedding
        space, always gets separate passes.
      sparsity_term: `Omega`: "l1" (default), the normalised L1 of the masked
        weights; "group_lasso", the group lasso over the student's channel
        groups (`lagrangian.group_lasso`), for structured Deadwood with
        `DeadwoodCallback(pattern="channel", unit="macs")`; the student must
        then be a functional or Sequential model whose graph `channel_groups`
        analyses.
      pattern: the old name of `sparsity_term` (None: "l1", "channel":
        "group_lasso"); it works for one release, with a DeprecationWarning.

      output: for a model with several outputs, the one (name or flat
        position; see `deadwood_tf.outputs`) whose class scores the
        constraints act on. Required then; the error lists the names.
      other_output_losses: for a model with several outputs, a loss for each
        other output (name -> Keras loss, e.g. "mse"), applied between the
        teacher's and the student's output on the clean inputs (distillation),
        each weighted by `other_output_weights` (default 1) and added to the
        Lagrangian.

    Inputs may be a dict, list or tuple of tensors (a model with several
    inputs); the attack perturbs the floating-point ones (see `Attack`). When
    every input is an integer id (text), use `EmbeddingAttack`, which perturbs
    the output of a named embedding layer. An attack that cannot apply to the
    student's inputs raises ValueError here.

    Training data: arrays `fit(x, y)` get example indices attached
    automatically (shuffling included). A tf.data input may yield
    `(x, y, index)` with integer indices in `[0, num_examples)`; one yielding
    `(x, y)` trains with one multiplier per constraint, as logged once.

    Labels outside `[0, classes)` and indices outside `[0, num_examples)`
    raise ValueError from `fit` and `evaluate` right after the batch that
    holds them (that batch's step leaves them out), with or without XLA.

    `evaluate` and `predict` behave as for the student. `fit` reports
    `loss` (the Lagrangian), `fidelity_violation` and `robustness_violation`
    (batch means of `max(0, c - alpha)` and `max(0, r - beta)`), `l1`
    (Omega) and `adv_accuracy`, besides compiled metrics on clean inputs.
    """

    def __init__(self, student, teacher, attack=_REQUIRED, fidelity_bound=0.0,
                 robustness_bound=0.0, sparsity_weight=50.0, label_weight=0.0,
                 temperature=1.0, robust_target="label", initial_multiplier=1.0,
                 num_examples=None, from_logits=None, batch_norm="separate",
                 sparsity_term="l1", output=None, other_output_losses=None,
                 other_output_weights=None, pattern=_UNSET, **kwargs):
        _check_models(student, teacher, attack)
        heads = outputs_lib.Heads.of(student, teacher, output, other_output_losses,
                                     other_output_weights)
        s_shape = outputs_lib.names_and_shapes(student, "student")[heads.index][1]
        if attack is not None:
            attack.check_inputs(student)
        _check_choice(batch_norm, "batch_norm", BATCH_NORM_MODES)
        _check_choice(robust_target, "robust_target", ROBUST_TARGETS)
        sparsity_term = sparsity_term_of(sparsity_term, pattern)
        group_lasso = _sparsity_term(student, sparsity_term)
        _check_num_examples(num_examples)
        hyper = _hyperparameters(fidelity_bound, robustness_bound, sparsity_weight,
                                 label_weight, temperature, initial_multiplier)
        super().__init__(**kwargs)
        self.student = student
        self.teacher = teacher
        self.attack = attack
        self.robust_target = robust_target
        self.batch_norm = batch_norm
        self.sparsity_term = sparsity_term
        self._group_lasso = group_lasso
        for k, v in hyper.items():
            setattr(self, k, v)
        self.from_logits = from_logits
        self.heads = heads
        self._wire_outputs(from_logits)
        self.num_classes = int(s_shape[-1])
        self.num_prunable = int(sum(np.prod(w.shape) for w, _ in self._pruned_weights()))
        self.num_examples = None
        self._warned_no_index = False
        self.fidelity_tracker = keras.metrics.Mean(name="fidelity_violation")
        self.robustness_tracker = keras.metrics.Mean(name="robustness_violation")
        self.l1_tracker = keras.metrics.Mean(name="l1")
        self.adv_accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="adv_accuracy")
        self.sparsity_weight_variable = self.add_weight(
            name="sparsity_weight", shape=(), dtype="float32", trainable=False,
            initializer=keras.initializers.Constant(self.sparsity_weight))
        # The masks hang on the student's variables, which a `.keras` file or
        # BackupAndRestore would not see: tracked here, they are saved and
        # restored with this model (from_config re-attaches them first).
        self.mask_variables = [m for _, m in self._pruned_weights()]
        # Out-of-range (labels, example indices) counted by the steps; per replica,
        # each copy holding the all-reduced total, so a read needs no communication.
        self._data_check = _Unsaved(tf.Variable(
            tf.zeros([2]), trainable=False, name="invalid_data",
            synchronization=tf.VariableSynchronization.ON_READ,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA))
        if num_examples is not None:
            self.ensure_multipliers(int(num_examples))
        self.built = True

    def _wire_outputs(self, from_logits):
        """The functions giving the student's and the teacher's class logits (and,
        with several outputs, all their outputs)."""
        student, teacher, heads = self.student, self.teacher, self.heads
        if heads.several:
            self._student_outputs = attacks_lib.outputs_fn(student, from_logits, heads.index)
            self._teacher_outputs = attacks_lib.outputs_fn(teacher, from_logits, heads.index)
            self._student_logits = lambda t, training=False: self._student_outputs(
                t, training)[0]
            self._teacher_logits = lambda t, training=False: self._teacher_outputs(
                t, training)[0]
            self.others_tracker = keras.metrics.Mean(name="other_outputs_loss")
        else:
            self._student_logits = attacks_lib.logits_fn(student, from_logits)
            self._teacher_logits = attacks_lib.logits_fn(teacher, from_logits)
        self._outputs_logits = (not attacks_lib.outputs_probabilities(
            student, heads.index if heads.several else None)
            if from_logits is None else bool(from_logits))

    # ------------------------------------------------------------ state

    @property
    def trainable_weights(self):
        # The teacher stays frozen without touching its `trainable` flag (the
        # caller's model is left as it was), and the optimizer holds no slots for it.
        return list(self.student.trainable_weights) if self.trainable else []

    @property
    def trainable_variables(self):
        return self.trainable_weights

    def _pruned_weights(self):
        return prune.pruned_weights(self.student)

    def ensure_multipliers(self, num_examples: int) -> None:
        """Creates the multipliers and violation buffers for `num_examples` slots."""
        if self.num_examples is not None:
            if self.num_examples != num_examples:
                raise ValueError(
                    f"Invalid training data: this DeadwoodModel keeps multipliers for "
                    f"{self.num_examples} examples. Received: {num_examples} examples. "
                    "Use the same training set, or a new DeadwoodModel."
                )
            return
        self.num_examples = int(num_examples)
        made = multipliers_lib.make_variables(self, self.num_examples, self.initial_multiplier,
                                              compat.distribute_strategy(self))
        for name, variable in made.items():  # tracked in this order (see make_variables)
            setattr(self, name, variable)

    def reset_violations(self) -> None:
        """Zeroes the per-example violation buffers (done at each epoch start)."""
        for v in (self.fidelity_violations, self.robustness_violations, self.violation_counts):
            v.assign(tf.zeros_like(v))

    def mean_violations(self):
        """Per-slot mean violations `(v, u)` since the last reset (0 where unseen)."""
        counts = self.violation_counts.value
        return (lagrangian.mean_violations(self.fidelity_violations.value, counts),
                lagrangian.mean_violations(self.robustness_violations.value, counts))

    def dual_step(self, fidelity_step_size: float, robustness_step_size: float,
                  max_multiplier: float) -> None:
        """`lam <- clip(lam + eta_lam * v, 0, max)`, `mu <- clip(mu + eta_mu * u, 0, max)`
        (`lagrangian.dual_update`)."""
        if self.num_examples is None:
            return
        v, u = self.mean_violations()
        self.fidelity_multipliers.assign(lagrangian.dual_update(
            self.fidelity_multipliers.value, v, fidelity_step_size, max_multiplier))
        self.robustness_multipliers.assign(lagrangian.dual_update(
            self.robustness_multipliers.value, u, robustness_step_size, max_multiplier))

    # ------------------------------------------------------------ data

    def fit(self, x=None, y=None, **kwargs):
        """`keras.Model.fit`; arrays get example indices attached (see the class doc)."""
        if keras.backend.backend() != "tensorflow":
            raise NotImplementedError(
                "DeadwoodModel.fit runs on the TensorFlow backend only (its training step "
                f"and attacks are TensorFlow's); Keras runs on {keras.backend.backend()!r}. Set "
                "KERAS_BACKEND=tensorflow, or give DeadwoodCallback to the `fit` of the pruned "
                "model itself (global magnitude cuts, no constraints).")
        checks.check_fit_arguments(self, x, y, kwargs.get("validation_data"))
        if y is not None and example_index.is_array_like(x):
            n = len(tf.nest.flatten(x)[0])
            if len(y) != n:
                raise ValueError(
                    f"Invalid values for arguments `x`, `y`: expected as many labels as inputs. "
                    f"Received: {n} inputs and {len(y)} labels"
                )
            example_index.check_labels(y, self.num_classes)
            self.ensure_multipliers(n)
            x = example_index.attach(x, n)
        elif isinstance(x, (tf.data.Dataset, tf.distribute.DistributedDataset)):
            has_index = example_index.dataset_has_index(x)
            if has_index and self.num_examples is None:
                raise ValueError(
                    "Invalid value for argument `num_examples`: the dataset yields "
                    "(x, y, index) but the DeadwoodModel was built with num_examples=None. "
                    "Pass num_examples=<size of the training set>."
                )
            if not has_index:
                self.ensure_multipliers(1)
        return super().fit(x, y, **self._with_data_check(kwargs))

    # ------------------------------------------------------------ data checks
    #
    # `tf.debugging` asserts compile to nothing under XLA (Keras' default on a
    # GPU), so the steps count out-of-range labels and indices into a variable
    # instead, keep those examples out of the Lagrangian and the buffers, and
    # `_InvalidDataCheck` raises from Python right after the step.

    def _indices(self, index, batch):
        """`(index, valid)` (`example_index.indices`); without an index, slot 0 for all."""
        if index is None:
            if self.num_examples is not None and self.num_examples > 1:
                raise ValueError(
                    f"Invalid training data: this DeadwoodModel keeps per-example multipliers "
                    f"for {self.num_examples} examples but the data yields no index. Yield "
                    "(x, y, index) batches."
                )
            if not self._warned_no_index:  # runs at trace time: once
                logging.warning("deadwood_tf: the training data carries no example index; "
                                "using one multiplier per constraint.")
                self._warned_no_index = True
            return tf.zeros([batch], tf.int64), tf.ones([batch], tf.bool)
        return example_index.indices(index, self.num_examples)

    def _count_invalid(self, label_ok, index_ok=None):
        """Adds the batch's out-of-range labels and indices to the counts."""
        bad = tf.stack([tf.reduce_sum(tf.cast(tf.logical_not(ok), tf.float32))
                        for ok in (label_ok, tf.ones([0], tf.bool) if index_ok is None
                                   else index_ok)])
        replica_ctx = tf.distribute.get_replica_context()
        if replicas.num_replicas(replica_ctx) > 1:
            bad = replica_ctx.all_reduce("sum", bad)  # every replica's copy holds the total
        self._data_check.variable.assign_add(bad)

    def raise_on_invalid_data(self) -> None:
        """Raises ValueError if a step since the last call met out-of-range labels
        or example indices (those examples were left out of the step). `fit` and
        `evaluate` call it after every batch."""
        labels, indices = (int(v) for v in self._data_check.variable.numpy())
        if labels or indices:
            self._data_check.variable.assign(tf.zeros_like(self._data_check.variable))
            raise example_index.invalid_data_error(labels, indices, self.num_classes,
                                                   self.num_examples)

    def _with_data_check(self, kwargs):
        callbacks = kwargs.get("callbacks")
        if isinstance(callbacks, keras.callbacks.CallbackList):
            return kwargs  # fit's own list, passed to evaluate for validation: checked already
        return {**kwargs, "callbacks": [*(callbacks or []), _InvalidDataCheck()]}

    def evaluate(self, x=None, y=None, **kwargs):
        """`keras.Model.evaluate`; out-of-range labels raise ValueError."""
        return super().evaluate(x, y, **self._with_data_check(kwargs))

    # ------------------------------------------------------------ steps

    def call(self, inputs, training=None):
        return self.student(example_index.inputs(inputs), training=training)

    def build(self, input_shape=None):
        self.built = True

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The compiled loss; without one (`compile(loss=None)`, the default),
        sparse categorical cross-entropy of the student, as `evaluate` reports."""
        if self.heads.several and y_pred is not None:
            y_pred = self.heads.split(y_pred)[0]
        if compat.compile_loss(self) is not None or y is None:
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        labels, label_ok = example_index.labels(y, self.num_classes)
        self._count_invalid(label_ok)
        ce = keras.losses.sparse_categorical_crossentropy(
            labels, y_pred, from_logits=self._outputs_logits)
        ce = lagrangian.batch_mean(ce, sample_weight)
        if self.losses:
            ce += tf.add_n([tf.cast(l, ce.dtype) for l in self.losses])
        return ce

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if self.heads.several and isinstance(y_pred, (list, tuple, dict)):
            y_pred = self.heads.split(y_pred)[0]
        return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def _student_clean(self, x):
        """`(logits, other outputs)` of the student on clean `x` (training mode)."""
        if self.heads.several:
            head, flat = self._student_outputs(x, training=True)
            return tf.cast(head, tf.float32), self.heads.split(flat)[1]
        return tf.cast(self._student_logits(x, training=True), tf.float32), {}

    def _student_passes(self, x, x_adv):
        """Student logits (float32) on `x` and `x_adv` (None without an attack), and
        its other outputs on `x`: one batch-norm batch of both, or two (`batch_norm`;
        always two for an attack in embedding space)."""
        logits = lambda t: tf.cast(self._student_logits(t, training=True), tf.float32)  # noqa: E731
        if x_adv is None or self.batch_norm == "separate" or self.heads.several or \
                isinstance(x_adv, EmbeddingPerturbation):
            clean, others = self._student_clean(x)
            return clean, (None if x_adv is None else self.attack.run(logits, x_adv)), others
        batch = tf.shape(tf.nest.flatten(x)[0])[0]
        both = logits(tf.nest.map_structure(lambda a, b: tf.concat([a, b], 0), x, x_adv))
        return both[:batch], both[batch:], {}

    def _violations(self, y, teacher_logits, logits, adv_logits):
        """Per-example hinge violations `(v, u)` of the fidelity and robustness bounds."""
        fidelity = lagrangian.distillation_gap(teacher_logits, logits, self.temperature)
        if adv_logits is None:
            robustness = tf.zeros_like(fidelity)
        elif self.robust_target == "teacher":
            robustness = lagrangian.distillation_gap(teacher_logits, adv_logits, self.temperature)
        else:
            robustness = tf.nn.sparse_softmax_cross_entropy_with_logits(y, adv_logits)
        return (lagrangian.hinge_violations(fidelity, self.fidelity_bound),
                lagrangian.hinge_violations(robustness, self.robustness_bound))

    def _lagrangian(self, y, index, valid, logits, fidelity_violation, robustness_violation,
                    sample_weight, replica_ctx, others_loss=0.0):
        """`(loss, grad_loss, l1)`: the Lagrangian of this replica's batch (logged);
        the share of the global batch's Lagrangian whose gradient this replica adds
        (`loss` itself without a strategy); and `Omega(w)`."""
        per_example = lagrangian.weighted_violations(
            self.fidelity_multipliers.value, self.robustness_multipliers.value, index,
            fidelity_violation, robustness_violation)
        if self.label_weight:
            per_example += self.label_weight * tf.nn.sparse_softmax_cross_entropy_with_logits(
                y, logits)
        per_example *= tf.cast(valid, tf.float32)  # out-of-range examples: left out
        if self._group_lasso is not None:  # Omega: the group lasso over channel groups
            l1 = tf.cast(self._group_lasso(), tf.float32)
        else:
            l1 = lagrangian.normalized_l1(
                [(w.value, m.value) for w, m in self._pruned_weights()], self.num_prunable)
        shared = self.sparsity_weight_variable.value * l1 + others_loss
        if self.student.losses:
            shared += tf.add_n([tf.cast(l, tf.float32) for l in self.student.losses])
        loss = shared + lagrangian.batch_mean(per_example, sample_weight)
        count = replicas.num_replicas(replica_ctx)
        if count == 1:
            return loss, loss, l1
        # Gradients are summed over replicas: the terms every replica computes
        # alike count 1/replicas each, and the data term is this replica's share
        # of the mean over the global batch, so the sum is the single-device
        # Lagrangian of the global batch (uneven or empty per-replica batches included).
        total = replicas.global_count(per_example, sample_weight, replica_ctx)
        return loss, shared / count + lagrangian.batch_mean(per_example, sample_weight,
                                                             total), l1

    def train_step(self, data):
        x, y, index, sample_weight = example_index.unpack(data)
        y, label_ok = example_index.labels(y, self.num_classes)
        index, index_ok = self._indices(index, tf.shape(y)[0])
        self._count_invalid(label_ok, index_ok)
        valid = label_ok & index_ok
        replica_ctx = tf.distribute.get_replica_context()

        student_fn = lambda t: self._student_logits(t, training=False)  # noqa: E731
        x_adv = self.attack(student_fn, x, y) if self.attack is not None else None
        if self.heads.several:
            head, flat = self._teacher_outputs(x, training=False)
            teacher_logits, teacher_others = head, self.heads.split(flat)[1]
        else:
            teacher_logits, teacher_others = self._teacher_logits(x, training=False), {}
        teacher_logits = tf.stop_gradient(tf.cast(teacher_logits, tf.float32))
        with tf.GradientTape() as tape:
            logits, adv_logits, others = self._student_passes(x, x_adv)
            fidelity_violation, robustness_violation = self._violations(
                y, teacher_logits, logits, adv_logits)
            others_loss = (tf.cast(self.heads.distillation(teacher_others, others), tf.float32)
                           if others else 0.0)
            loss, grad_loss, l1 = self._lagrangian(
                y, index, valid, logits, fidelity_violation, robustness_violation,
                sample_weight, replica_ctx, others_loss)
            scaled = self.optimizer.scale_loss(grad_loss)
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        multipliers_lib.record_violations(
            (self.fidelity_violations, self.robustness_violations, self.violation_counts),
            index, valid, fidelity_violation, robustness_violation, replica_ctx)
        return self._step_logs(x, y, logits, adv_logits, loss, l1, fidelity_violation,
                               robustness_violation, sample_weight, others_loss)

    def _step_logs(self, x, y, logits, adv_logits, loss, l1, fidelity_violation,
                   robustness_violation, sample_weight, others_loss=0.0):
        tracker = compat.loss_tracker(self)
        if tracker is not None:
            tracker.update_state(loss, sample_weight=tf.shape(y)[0])
        self.fidelity_tracker.update_state(fidelity_violation)
        self.robustness_tracker.update_state(robustness_violation)
        self.l1_tracker.update_state(l1)
        if self.heads.several:
            self.others_tracker.update_state(others_loss)
        if adv_logits is not None:
            self.adv_accuracy_tracker.update_state(y, adv_logits)
        y_pred = logits if self._outputs_logits else tf.nn.softmax(logits)
        return replicas.for_multi_worker(self.compute_metrics(x, y, y_pred, sample_weight=sample_weight))

    def test_step(self, data):
        x, y, _, sample_weight = example_index.unpack(data)
        logs = super().test_step((x, y) if sample_weight is None else (x, y, sample_weight))
        return replicas.for_multi_worker({k: v for k, v in logs.items() if k not in TRAINING_METRICS})

    # ------------------------------------------------------------ config

    def get_config(self):
        return {
            "student": keras.saving.serialize_keras_object(self.student),
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "attack": None if self.attack is None else keras.saving.serialize_keras_object(self.attack),
            "fidelity_bound": self.fidelity_bound,
            "robustness_bound": self.robustness_bound,
            "sparsity_weight": self.sparsity_weight,
            "label_weight": self.label_weight,
            "temperature": self.temperature,
            "robust_target": self.robust_target,
            "batch_norm": self.batch_norm,
            "sparsity_term": self.sparsity_term,
            "initial_multiplier": self.initial_multiplier,
            "num_examples": self.num_examples,
            "from_logits": self.from_logits,
            "name": self.name,
            # Which of the student's weights carry masks (positions in
            # `student.weights`), so that from_config can re-attach them.
            "masked_weights": masked_weight_positions(self),
            **self.heads.config(),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("student", "teacher", "attack"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(
                    config[key], custom_objects=custom_objects)
        reattach_masks(config["student"], config.pop("masked_weights", None))
        if "pattern" in config:  # a file saved before `sparsity_term`
            config["sparsity_term"] = _PATTERN_TERMS[config.pop("pattern")]
        return cls(**config)

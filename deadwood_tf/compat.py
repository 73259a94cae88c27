"""Every use of Keras' (and tf.distribute's and the TFLite converter's) private
API in deadwood_tf.

Written for Keras 3.15 (TensorFlow backend) and TensorFlow 2.21. Each entry
names what it relies on; tests/test_compat.py fails when a new release
renames, removes or re-signs one of them, so that an upgrade breaks here, in
one place, and not deep inside a training step.

Readers (functions) and overrides (`TrainerOverrides`, a mixin placed before
`keras.Model`) are the only places the rest of the package touches these names.
"""

from __future__ import annotations


KERAS_VERSION = "3.15"  # the version every entry below was written and tested for
TF_VERSION = "2.21"  # likewise for the TensorFlow entries


def compile_loss(model):
    """`model._compile_loss` (Keras 3.15 `Trainer.compile`): the compiled loss
    object, or None when `compile(loss=None)`."""
    return model._compile_loss


def loss_tracker(model):
    """`model._loss_tracker` (Keras 3.15 `Trainer`): the `Mean` metric behind
    the `loss` log, or None when the model is not compiled."""
    return model._loss_tracker


def distribute_strategy(model):
    """`model._distribute_strategy` (Keras 3.15 `TensorFlowTrainer.__init__`):
    the strategy whose scope the model was built under, or None."""
    return getattr(model, "_distribute_strategy", None)


def in_multi_worker_mode(strategy) -> bool:
    """`strategy.extended._in_multi_worker_mode()` (TF 2.21
    `CollectiveAllReduceExtended`): whether a MultiWorkerMirroredStrategy runs
    with several workers (False for a single-worker one)."""
    return strategy.extended._in_multi_worker_mode()


def per_replica_component_spec(spec):
    """The first replica's spec of a `PerReplicaSpec` (`spec._value_specs[0]`,
    TF 2.21 `tensorflow.python.distribute.values`); any other spec unchanged."""
    value_specs = getattr(spec, "_value_specs", None)
    return value_specs[0] if value_specs else spec


def tracked_sublayers(layer) -> list:
    """The sub-layers tracked directly under `layer`, in creation order
    (`layer._layers`, Keras 3.15 `Layer`; what `Layer._flatten_layers` walks).
    Keras has no public walk below `Model.layers`."""
    return list(getattr(layer, "_layers", ()))


def inbound_node(operation, node_index: int):
    """The `node_index`-th call of `operation` in a functional graph
    (`operation._inbound_nodes[node_index]`, Keras 3.15 `Operation`)."""
    return operation._inbound_nodes[node_index]


def inbound_nodes(operation) -> list:
    """Every call of `operation` in functional graphs (`operation._inbound_nodes`,
    Keras 3.15 `Operation`), each a `Node` with `input_tensors`."""
    return list(getattr(operation, "_inbound_nodes", ()))


def build_input_shapes(model) -> list:
    """The input shapes a subclassed model was built or first called with
    (`model._build_shapes_dict`, Keras 3.15 `Layer`; what Keras' own export
    reads), batch axis first; [] when it never was."""
    shapes = getattr(model, "_build_shapes_dict", None) or {}
    return [tuple(s) for s in shapes.values()
            if isinstance(s, (tuple, list)) and all(d is None or isinstance(d, int) for d in s)]


def producing_operation(keras_tensor):
    """The operation (layer) that produced a symbolic `KerasTensor`
    (`keras_tensor._keras_history.operation`, Keras 3.15)."""
    return keras_tensor._keras_history.operation


def calibrated_tflite(converter) -> bytes:
    """The float `.tflite` model that `converter` (set up for full-integer
    quantization) calibrates before quantizing, each activation tensor holding
    its calibrated range in `quantization.min` / `.max`
    (`converter._experimental_calibrate_only`, TF 2.21 `TFLiteConverter`; what
    `tf.lite.experimental.QuantizationDebugger` uses). `converter` is changed."""
    converter._experimental_calibrate_only = True
    return converter.convert()


def quantize_calibrated(calibrated: bytes, integer_io: bool = False) -> bytes:
    """`calibrated_tflite`'s model quantized as the converter would (per-channel
    int8 weights, int8 activations from the calibrated ranges), with float or
    int8 input and output (`tensorflow.lite.python.convert.mlir_quantize`,
    TF 2.21)."""
    import tensorflow as tf
    from tensorflow.lite.python import convert

    io_type = tf.int8 if integer_io else tf.float32
    return convert.mlir_quantize(calibrated, input_data_type=io_type, output_data_type=io_type)


def sparsify_tflite(content: bytes) -> bytes:
    """The converter's `EXPERIMENTAL_SPARSITY` step on a converted model: sparse
    weights stored compactly (`tensorflow.lite.python.convert.mlir_sparsify`,
    TF 2.21)."""
    from tensorflow.lite.python import convert

    return convert.mlir_sparsify(content)


class TrainerOverrides:
    """Overrides of two private `keras.Model` methods (Keras 3.15).

    Use as `class M(TrainerOverrides, keras.Model)`.
    """

    def _lock_state(self):
        # Keras 3.15 `Layer._lock_state` forbids new variables once the model is
        # built; a DeadwoodModel creates its multipliers later, once `fit` knows
        # the size of the training set.
        pass

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3.15 `TensorFlowTrainer._maybe_symbolic_build` builds from the first
        # distributed batch after `strategy.reduce("MEAN", <whole nest>)`, which
        # MultiWorkerMirroredStrategy rejects ("Attempt to convert a value
        # (PerReplica...)"). The build only needs shapes and dtypes: take the first
        # local replica's values (no communication).
        strategy = distribute_strategy(self)
        if strategy is not None and iterator is not None and data_batch is None:
            import tensorflow as tf  # here only: the mask code imports compat, TF-free

            for _, _, it in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: (strategy.experimental_local_results(v)[0]
                               if isinstance(v, tf.distribute.DistributedValues) else v),
                    next(it))
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

"""Each private Keras / tf.distribute member deadwood_tf.compat relies on still
exists with the shape it was written for (Keras 3.15, TF 2.21). A failure here
means an upgrade changed one: fix that entry of compat.py, nothing else."""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.distribute import collective_all_reduce_strategy
from tensorflow.python.distribute import values as distribute_values

from deadwood_tf import compat


@pytest.fixture
def compiled():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="out")])
    model.compile("adam", "mse")
    return model


def test_keras_is_the_version_compat_was_written_for():
    assert keras.__version__.startswith(compat.KERAS_VERSION + "."), (
        f"compat.py targets Keras {compat.KERAS_VERSION}; check every entry for "
        f"Keras {keras.__version__} and update KERAS_VERSION")


def test_compile_loss_and_loss_tracker(compiled):
    assert type(compat.compile_loss(compiled)).__name__ == "CompileLoss"
    assert isinstance(compat.loss_tracker(compiled), keras.metrics.Mean)
    uncompiled = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    uncompiled.compile("adam")  # loss=None
    assert compat.compile_loss(uncompiled) is None


def test_distribute_strategy_is_the_scope_the_model_was_made_under():
    assert compat.distribute_strategy(keras.Sequential([keras.layers.Dense(1)])) is None
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = keras.Sequential([keras.layers.Dense(1)])
    assert compat.distribute_strategy(model) is strategy


def test_in_multi_worker_mode():
    method = collective_all_reduce_strategy.CollectiveAllReduceExtended._in_multi_worker_mode
    assert list(inspect.signature(method).parameters) == ["self"]


def test_per_replica_component_spec():
    spec = tf.TensorSpec([None, 3], tf.float32)
    per_replica = distribute_values.PerReplicaSpec(spec, tf.TensorSpec([None, 3], tf.float32))
    assert per_replica._value_specs[0] is spec
    assert compat.per_replica_component_spec(per_replica) is spec
    assert compat.per_replica_component_spec(spec) is spec


def test_producing_operation():
    inputs = keras.Input((3,))
    dense = keras.layers.Dense(2)
    assert compat.producing_operation(dense(inputs)) is dense


def test_overridden_private_methods_keep_their_signatures():
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    assert "_maybe_symbolic_build" in TensorFlowTrainer.__dict__
    assert list(inspect.signature(TensorFlowTrainer._maybe_symbolic_build).parameters) == [
        "self", "iterator", "data_batch"]
    assert list(inspect.signature(keras.layers.Layer._lock_state).parameters) == ["self"]
    # Keras calls _lock_state when a model is built: without the override a
    # later variable would be refused ("You cannot add new elements of state").

    class Late(compat.TrainerOverrides, keras.Model):
        def call(self, x):
            return x

    model = Late()
    model.build((None, 1))
    model._lock_state()
    model.late = keras.Variable(np.zeros(2))  # allowed: the state was not locked


def test_tracked_sublayers_and_inbound_node():
    inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="a")], name="inner")
    x = keras.Input((3,))
    model = keras.Model(x, keras.layers.Dense(2, name="b")(inner(x)))
    names = [l.name for l in compat.tracked_sublayers(model)]
    assert "inner" in names and "b" in names
    assert [l.name for l in compat.tracked_sublayers(inner)][-1] == "a"
    dense = model.get_layer("b")
    node = compat.inbound_node(dense, 0)
    assert node.operation is dense and len(node.input_tensors) == 1


def test_inbound_nodes_and_build_input_shapes():
    x = keras.Input((3,))
    dense = keras.layers.Dense(2)
    model = keras.Model(x, dense(x))
    nodes = compat.inbound_nodes(dense)
    assert len(nodes) == 1 and nodes[0].input_tensors[0] is x

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.head = keras.layers.Dense(2)

        def call(self, x):
            return self.head(x)

    sub = Sub()
    assert compat.build_input_shapes(sub) == []
    sub(np.zeros((1, 5), "float32"))
    assert compat.build_input_shapes(sub) == [(1, 5)]
    del model


def test_tensorflow_is_the_version_compat_was_written_for():
    assert tf.__version__.startswith(compat.TF_VERSION + "."), (
        f"compat.py's TFLite entries target TF {compat.TF_VERSION}; check them for "
        f"TF {tf.__version__} and update TF_VERSION")


def test_tflite_calibration_quantization_and_sparsification():
    from ai_edge_litert.tools import flatbuffer_utils

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(16, name="d")])
    kernel = model.get_layer("d").kernel
    kernel.assign(kernel.numpy() * (np.random.default_rng(0).uniform(size=(32, 16)) < 0.1))
    x = np.random.default_rng(1).uniform(0, 1, (8, 32)).astype("float32")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([r[None]] for r in x)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]

    def tensors(content):
        graph = flatbuffer_utils.read_model_from_bytearray(bytearray(content)).subgraphs[0]
        return graph, {t.name.decode(): t for t in graph.tensors}

    calibrated = compat.calibrated_tflite(converter)
    graph, _ = tensors(calibrated)
    out = graph.tensors[graph.outputs[0]]   # float, with its calibrated range
    assert out.type == flatbuffer_utils.TensorType.FLOAT32
    assert out.quantization.min is not None and out.quantization.max is not None
    for integer_io, io_type in ((False, "FLOAT32"), (True, "INT8")):
        quantized = compat.quantize_calibrated(calibrated, integer_io)
        graph, by_name = tensors(quantized)
        assert graph.tensors[graph.inputs[0]].type == getattr(flatbuffer_utils.TensorType, io_type)
        assert any(t.type == flatbuffer_utils.TensorType.INT8 and len(t.shape) == 2
                   for t in by_name.values())
    sparse = compat.sparsify_tflite(compat.quantize_calibrated(calibrated))
    assert any(t.sparsity is not None for t in tensors(sparse)[1].values())

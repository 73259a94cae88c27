"""Model coverage, shown, not claimed: each step of the pipeline run on models
nobody here wrote (keras.applications, KerasHub) and on the everyday kinds of
Keras model (ops between layers, subclassed, several inputs or outputs).

`check(name)` runs one model through: prunable kernels found; Deadwood fit to
90% global sparsity with an exact cut; masked weights still zero after
training; strip, `.keras` save and load with `safe_mode=True`; verified TFLite
export; sparsity read back from the file. A step that fails records its error
(the later steps go on where they can). `JaxColumn` runs the mask path
(`jax_cell`: prune, cut, plain fit, strip, `.keras`) of every model in one
KERAS_BACKEND=jax process. `tools/check_coverage.py` writes the table to
`docs/model_coverage.md`; the tests run a fast subset and check the table.

Models are tiny (small inputs, a few layers, random data, one epoch): this
checks that the mechanism works on each architecture, not accuracy.
KerasHub models need `keras-hub` (in the `test` extra).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import traceback

import keras
import numpy as np

from deadwood_tf import attacks, callbacks, deadwood_model, export, outputs, prune, prune_registry
from deadwood_tf.embedding_attack import EmbeddingAttack

SPARSITY = 0.9
NUM_CLASSES = 4
NUM_EXAMPLES = 32
# Variable names that hold a layer's weight matrix in Keras and KerasHub; the
# "found" column counts how many of these the registry reaches.
KERNEL_NAMES = ("kernel", "embeddings", "depthwise_kernel", "pointwise_kernel")
STEPS = ("kernels", "deadwood_fit", "masked_stay_zero", "strip_save_load", "tflite_export",
         "tflite_sparsity")
HEADERS = ("prunable kernels found / kernels", "Deadwood fit to 90% global, cut exact",
           "masked weights still zero after training", "strip + save + load(safe_mode=True)",
           "export verified (every output, inputs by name)",
           "file sparsity (within 0.01 of Keras')",
           "JAX: prune, cut, fit keeps zeros, strip + save + load")
COLUMNS = STEPS + ("jax",)  # the last one computed in a process of its own


# ---------------------------------------------------------------- models


def _classifier(inputs, features, name):
    """A classification head on `features` (pooled if it has more than one axis)."""
    h = features
    if len(h.shape) == 3:
        h = keras.layers.GlobalAveragePooling1D()(h)
    elif len(h.shape) == 4:
        h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES, name="logits")(h), name=name)


def _application(cls, **kwargs):
    def build():
        return cls(weights=None, input_shape=(32, 32, 3), classes=NUM_CLASSES,
                   classifier_activation=None, **kwargs)
    return build


def _bert():
    import keras_hub

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=8)
    return _classifier(backbone.input, backbone.output["pooled_output"], "bert_classifier")


def _gpt2():
    import keras_hub

    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=8)
    return _classifier(backbone.input, backbone.output, "gpt2_classifier")


def _vit():
    import keras_hub

    backbone = keras_hub.models.ViTBackbone(
        image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
        mlp_dim=32)
    return _classifier(backbone.input, backbone.output, "vit_classifier")


def _resnet():
    import keras_hub

    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 64],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        image_shape=(32, 32, 3))
    return _classifier(backbone.input, backbone.output, "resnet_classifier")


def _functional_with_ops():
    """A transformer block written as users write it: `norm(h + attn(h, h))`."""
    inp = keras.Input((8, 8))
    h = keras.layers.Dense(16, name="embed")(inp)
    h = keras.layers.LayerNormalization()(h + keras.layers.MultiHeadAttention(2, 8)(h, h))
    h = keras.ops.relu(h) * 0.5 + keras.ops.mean(h, axis=1, keepdims=True)
    return _classifier(inp, h, "functional_with_ops")


@keras.saving.register_keras_serializable(package="deadwood_tf_coverage")
class SubclassedCNN(keras.Model):
    """A subclassed model: its graph is its Python `call`."""

    def __init__(self, width=8, classes=NUM_CLASSES, **kwargs):
        super().__init__(**kwargs)
        self.width, self.classes = width, classes
        self.conv = keras.layers.Conv2D(width, 3, activation="relu")
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.hidden = keras.layers.Dense(16, activation="relu")
        self.head = keras.layers.Dense(classes)

    def call(self, x):
        h = self.hidden(self.pool(self.conv(x)))
        return self.head(h + keras.ops.mean(h, axis=-1, keepdims=True))

    def get_config(self):
        return {**super().get_config(), "width": self.width, "classes": self.classes}


def _subclassed():
    model = SubclassedCNN()
    model(np.zeros((1, 16, 16, 3), "float32"))
    return model


def _two_inputs():
    """A siamese pair: one shared encoder on two images."""
    encoder = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Conv2D(8, 3),
                                keras.layers.GlobalAveragePooling2D(),
                                keras.layers.Dense(16)], name="encoder")
    a, b = keras.Input((16, 16, 1), name="left"), keras.Input((16, 16, 1), name="right")
    h = keras.layers.Concatenate()([encoder(a), encoder(b)])
    return _classifier([a, b], h, "two_inputs")


def _two_outputs():
    inp = keras.Input((16,))
    h = keras.layers.Dense(32, activation="relu")(inp)
    return keras.Model(inp, [keras.layers.Dense(NUM_CLASSES, name="logits")(h),
                             keras.layers.Dense(2, name="aux")(h)], name="two_outputs")


MODELS = {
    "MobileNetV2": _application(keras.applications.MobileNetV2, alpha=0.35),
    "ResNet50V2": _application(keras.applications.ResNet50V2),
    "EfficientNetB0": _application(keras.applications.EfficientNetB0),
    "ConvNeXtTiny": _application(keras.applications.ConvNeXtTiny),
    "KerasHub BertBackbone + head": _bert,
    # KerasHub 0.32's ViT cannot be rebuilt from its config (ViTPatchingAndEmbedding's
    # get_config returns arguments its __init__ refuses); the ResNet backbone can.
    "KerasHub ViTBackbone + head": _vit,
    "KerasHub ResNetBackbone + head": _resnet,
    "KerasHub GPT2Backbone + head": _gpt2,
    "functional with ops between layers": _functional_with_ops,
    "subclassed": _subclassed,
    "two inputs (shared encoder)": _two_inputs,
    "two outputs": _two_outputs,
}


# ---------------------------------------------------------------- data


def _sample(spec, rng, n):
    """Random inputs for a KerasTensor `spec`: ids for int inputs, [0, 1) otherwise."""
    shape = (n, *(8 if d is None else d for d in spec.shape[1:]))  # sequences: 8 tokens
    if "int" in str(spec.dtype):
        if spec.name.endswith("padding_mask"):
            return np.ones(shape, "int32")
        return rng.integers(0, 2 if "segment" in spec.name else 100, shape).astype("int32")
    return rng.uniform(0, 1, shape).astype("float32")


def sample_data(model, n=NUM_EXAMPLES, seed=0):
    """`(x, y)`: inputs shaped like `model`'s (nested alike), labels in [0, NUM_CLASSES)."""
    rng = np.random.default_rng(seed)
    try:
        inputs = model.input
    except (AttributeError, ValueError):  # subclassed: no symbolic input
        inputs = None
    if inputs is None:  # the shape `_subclassed` builds with
        x = rng.uniform(0, 1, (n, 16, 16, 3)).astype("float32")
    else:
        x = keras.tree.map_structure(lambda s: _sample(s, rng, n), inputs)
    return x, rng.integers(0, NUM_CLASSES, n)


def _token_embedding(model) -> str:
    """The name of the model's token embedding: the first Embedding layer whose name
    says "token", else the first Embedding layer."""
    found = [l for l in prune_registry.sublayers(model) if isinstance(l, keras.layers.Embedding)]
    if not found:
        raise ValueError("no Embedding layer: token inputs with nothing to perturb")
    return next((l.name for l in found if "token" in l.name), found[0].name)


def _has_float_inputs(x) -> bool:
    return any(np.issubdtype(np.asarray(v).dtype, np.floating) for v in keras.tree.flatten(x))


# ---------------------------------------------------------------- checks


@dataclasses.dataclass
class Row:
    name: str
    cells: dict  # column -> (ok: bool, text)


def _brief(e: BaseException) -> str:
    """The error in one short line: its start, and the end of its cause (where Keras
    puts the root of a deserialization failure)."""
    text = " ".join(f"{type(e).__name__}: {e}".split())
    cause = e.__cause__
    if cause is not None and len(text) > 160:
        tail = " ".join(f"{type(cause).__name__}: {cause}".split())
        return text[:100] + " ... " + tail[-120:]
    return text if len(text) <= 220 else text[:217] + "..."


# Failures whose cause lies outside deadwood_tf: what a user can do about them.
_HINTS = (
    ("Unrecognized keyword arguments passed to",
     "A layer's get_config returns arguments its own __init__ refuses (a bug of the "
     "layer's library: KerasHub 0.32's ViTPatchingAndEmbedding), so no .keras file of "
     "this model loads, pruned or not; keep the weights (`save_weights`) and rebuild the "
     "model from its arguments."),
)


def hint(e: BaseException) -> str:
    """" -- advice" for a failure whose cause lies outside deadwood_tf, else ""."""
    text = f"{e} {e.__cause__ or ''}"
    return "".join(f" -- {advice}" for needle, advice in _HINTS if needle in text)


def _failure(e: BaseException) -> str:
    if os.environ.get("DEADWOOD_COVERAGE_TRACEBACKS"):
        traceback.print_exc()
    return _brief(e) + hint(e)


def _kernels(model):
    found = len(prune_registry.prunable_variables(model))
    seen, total = set(), 0
    for v in model.trainable_weights:
        if v.name in KERNEL_NAMES and id(v) not in seen:
            seen.add(id(v))
            total += 1
    return found, total


def _plain_fit(student, x, y, fit_callbacks=()):
    """One epoch of plain Keras training (AdamW), a class label per output."""
    outs = keras.tree.flatten(student(keras.tree.map_structure(lambda v: v[:1], x)))
    labels = [y % int(o.shape[-1]) for o in outs]
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    student.compile(keras.optimizers.AdamW(1e-2), [ce] * len(outs))
    student.fit(x, labels if len(outs) > 1 else labels[0], epochs=1, batch_size=16, verbose=0,
                callbacks=list(fit_callbacks))


def _masked_and_revived(model):
    """(masked weights, masked weights that are not exactly zero)."""
    pairs = [(keras.ops.convert_to_numpy(w.value), keras.ops.convert_to_numpy(m.value))
             for w, m in prune.pruned_weights(model)]
    return (sum(int(np.sum(m == 0)) for _, m in pairs),
            sum(int(np.count_nonzero(w[m == 0])) for w, m in pairs))


def _round_trip(stripped, x):
    """`stripped` saved as .keras and loaded with safe_mode=True; whether the first
    outputs agree, and whether no deadwood constraint is left."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.keras")
        stripped.save(path)
        loaded = keras.models.load_model(path, safe_mode=True)
    same = np.allclose(keras.ops.convert_to_numpy(keras.tree.flatten(loaded(x))[0]),
                       keras.ops.convert_to_numpy(keras.tree.flatten(stripped(x))[0]),
                       atol=1e-5)
    plain = all("deadwood" not in type(v.constraint).__module__
                for v in loaded.weights if v.constraint is not None)
    return loaded, same, plain


class _Skipped(Exception):
    pass


# What each handed-on object is, for the cell of a step that could not run.
_MADE_BY = {"student": "the pruned model of the Deadwood fit",
            "stripped": "the stripped model", "loaded": "the model loaded from .keras",
            "tflite": "the exported file"}


class _State(dict):
    """What the steps hand on; a step reading what an earlier one failed to make is skipped."""

    def __missing__(self, key):
        raise _Skipped(_MADE_BY.get(key, key))


def _step_kernels(s):
    found, total = _kernels(s["teacher"])
    return found == total and found > 0, f"{found} / {total}"


def _step_deadwood_fit(s):
    teacher, x = s["teacher"], s["x"]
    student = s["student"] = prune.prune_model(teacher)
    # The attack perturbs the float inputs and leaves token ids alone; a model
    # with token inputs only gets it in embedding space, on its token embedding.
    if _has_float_inputs(x):
        attack, note = attacks.PGD(0.03, steps=2, step_size=0.01), ""
    else:
        layer = _token_embedding(student)
        attack = EmbeddingAttack(attacks.PGD(0.5, steps=2, norm="l2"), layer=layer)
        note = f" (PGD in embedding space, on {layer!r})"
    heads = outputs.names_and_shapes(teacher, "teacher")
    several = {} if len(heads) == 1 else dict(
        output=heads[0][0], other_output_losses={n: "mse" for n, _ in heads[1:]})
    if several:
        note += f" (constraints on {heads[0][0]!r}; others distilled, mse)"
    model = deadwood_model.DeadwoodModel(student, teacher, attack=attack, **several)
    model.compile(keras.optimizers.AdamW(1e-3))
    model.fit(x, s["y"], epochs=s["epochs"], batch_size=16, verbose=0,
              callbacks=[callbacks.DeadwoodCallback(SPARSITY, prune_epoch=0, verbose=0)])
    zeros, want = prune.sparsity_report(model).zeros, round(SPARSITY * model.num_prunable)
    return zeros == want, f"{zeros} = round(0.9 * {model.num_prunable}){note}" if (
        zeros == want) else f"{zeros} zeros, expected {want}"


def _step_masked_stay_zero(s):
    student, note = s.get("student"), ""
    if student is None or not prune.sparsity_report(student).zeros:
        # Deadwood failed: check the masks with plain Keras training instead.
        student = s["student"] = prune.prune_model(s["teacher"])
        prune.apply_sparsity(student, SPARSITY)
        _plain_fit(student, s["x"], s["y"])
        note = " (plain Keras fit)"
    masked, revived = _masked_and_revived(student)
    return revived == 0 and masked > 0, f"{masked} masked, {revived} non-zero{note}"


def _step_strip_save_load(s):
    stripped = s["stripped"] = prune.strip_pruning(s["student"])
    loaded, same, plain = _round_trip(stripped, s["x"])
    s["loaded"] = loaded
    sparsity = prune.sparsity_report(loaded).sparsity
    ok = same and plain and type(loaded) is type(stripped) and sparsity >= SPARSITY - 1e-3
    return ok, (f"{type(loaded).__name__}, sparsity {sparsity:.4f}"
                + ("" if same else ", outputs differ"))


def _step_tflite_export(s):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.tflite")
        # A model whose .keras file does not load is exported as stripped.
        source = s.get("loaded", s["stripped"])
        info = export.export_tflite(source, path, sample_inputs=s["x"])
        with open(path, "rb") as f:
            s["tflite"] = f.read()
    note = "" if "loaded" in s else " (of the stripped model: the .keras file did not load)"
    return True, (f"{info['bytes']} B{note}, inputs {', '.join(info['inputs'])}; outputs "
                  f"{', '.join(info['outputs'])}; max abs diff {info['max_abs_diff']:.1e}")


def _step_tflite_sparsity(s):
    read = export.tflite_sparsity(s["tflite"], s["stripped"])
    want = prune.sparsity_report(s["stripped"]).sparsity
    text = f"{read['model_sparsity']:.4f} (Keras: {want:.4f})"
    if read["not_stored"]:
        text += (f"; {read['not_stored']} weights share a tensor with an identical one "
                 f"(all-zero kernels of one shape; stored tensors alone: "
                 f"{read['sparsity']:.4f})")
    return abs(read["model_sparsity"] - want) <= 0.01, text


_STEP_FNS = (_step_kernels, _step_deadwood_fit, _step_masked_stay_zero, _step_strip_save_load,
             _step_tflite_export, _step_tflite_sparsity)


def _run_step(fn, state):
    """`fn(state)`'s (ok, text); a failure becomes its cell, and the next steps go on."""
    try:
        return fn(state)
    except _Skipped as e:
        return False, f"not run: it needs {e}, and that step failed (see its cell)"
    except Exception as e:
        return False, _failure(e)


def check(name: str, epochs: int = 1) -> Row:
    """Runs the model `name` (a key of MODELS) through every step of STEPS, on
    this process' backend (TensorFlow)."""
    keras.utils.set_random_seed(0)
    try:
        teacher = MODELS[name]()
        x, y = sample_data(teacher)
    except Exception as e:  # the model itself cannot be built here
        return Row(name, {key: (False, "model not built: " + _brief(e)) for key in STEPS})
    state = _State(teacher=teacher, x=x, y=y, epochs=epochs)
    return Row(name, {key: _run_step(fn, state) for key, fn in zip(STEPS, _STEP_FNS)})


# ---------------------------------------------------------------- JAX


def jax_cell(name: str):
    """The JAX column's (ok, text) for model `name`, in a KERAS_BACKEND=jax process:
    `prune_model`; a plain `fit` whose `DeadwoodCallback(0.9, prune_epoch=0)` cuts
    before training; masked weights exactly zero after it, kept ones moved;
    `strip_pruning`; `.keras` save and `load_model(safe_mode=True)`."""
    if keras.backend.backend() != "jax":
        raise RuntimeError(f"jax_cell runs under KERAS_BACKEND=jax; this process runs "
                           f"{keras.backend.backend()}")
    keras.utils.set_random_seed(0)
    teacher = MODELS[name]()
    x, y = sample_data(teacher)
    student = prune.prune_model(teacher)
    before = [keras.ops.convert_to_numpy(w.value) for w, _ in prune.pruned_weights(student)]
    _plain_fit(student, x, y, [callbacks.DeadwoodCallback(SPARSITY, prune_epoch=0, verbose=0)])
    total = sum(b.size for b in before)
    zeros, want = prune.sparsity_report(student).zeros, round(SPARSITY * total)
    masked, revived = _masked_and_revived(student)
    moved = sum(int(np.sum((keras.ops.convert_to_numpy(w.value) != b)[
        keras.ops.convert_to_numpy(m.value) == 1]))
        for (w, m), b in zip(prune.pruned_weights(student), before))
    problems = [text for bad, text in (
        (zeros != want, f"the cut left {zeros} zeros, expected {want}"),
        (revived, f"{revived} masked weights non-zero after fit"),
        (not moved, "fit moved no kept weight")) if bad]
    try:
        loaded, same, plain = _round_trip(prune.strip_pruning(student), x)
    except Exception as e:  # say how far it went
        done = "; ".join(problems) or f"prune, cut ({zeros} = round(0.9 * {total})) and fit ok"
        return False, f"{done}; strip + .keras round trip: {_failure(e)}"
    problems += [text for bad, text in ((not same, "the loaded model's outputs differ"), (
        not plain, "a deadwood constraint is left after strip")) if bad]
    text = (f"cut {zeros} = round(0.9 * {total}), {masked} masked stay 0 through fit, "
            f"{type(loaded).__name__} loaded with the same outputs")
    return not problems, "; ".join(problems) if problems else text


def jax_worker(out_path: str, names) -> None:
    """Appends `{"name", "ok", "text"}` to `out_path` (one JSON line) per model, as each
    is done; run by `JaxColumn` in a process of its own."""
    for name in names:
        try:
            ok, text = jax_cell(name)
        except Exception as e:
            ok, text = False, _failure(e)
        with open(out_path, "a") as f:
            f.write(json.dumps({"name": name, "ok": bool(ok), "text": text}) + "\n")


class JaxColumn:
    """The JAX column of `names`, computed in one KERAS_BACKEND=jax process (Keras
    picks its backend at first import; this process runs TensorFlow), started at
    once so that it runs while this process checks the TensorFlow steps."""

    def __init__(self, names, workdir: str):
        self.names, self.path = list(names), os.path.join(workdir, "jax_cells.jsonl")
        self.log = os.path.join(workdir, "jax_stderr.txt")
        self.proc = None
        if importlib.util.find_spec("jax") is None:
            return
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2",
                   PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        code = ("from deadwood_tf.benchmarks import coverage; "
                f"coverage.jax_worker({self.path!r}, {self.names!r})")
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-c", code], env=env,
                                         stdout=subprocess.DEVNULL, stderr=err)

    def cells(self) -> dict:
        """`{name: (ok, text)}` of the models done so far."""
        if not os.path.exists(self.path):
            return {}
        with open(self.path) as f:
            done = [json.loads(line) for line in f if line.strip()]
        return {d["name"]: (d["ok"], d["text"]) for d in done}

    def wait(self, timeout: float = 3600) -> dict:
        """Every model's cell, once the process has ended (a model it never reached
        says why)."""
        if self.proc is None:
            why = "not run: jax is not installed here (`pip install -e .[test]` installs it)"
            return {name: (False, why) for name in self.names}
        try:
            self.proc.wait(timeout)
            with open(self.log) as f:
                last = (f.read().strip().splitlines() or ["no error output"])[-1]
            why = f"not run: the JAX process ended (exit {self.proc.returncode}) first: {last}"
        except subprocess.TimeoutExpired:
            self.proc.kill()
            why = f"not run: the JAX process was stopped after {timeout:.0f} s"
        return {**{name: (False, why[:300]) for name in self.names}, **self.cells()}


# ---------------------------------------------------------------- table


def _row_line(row) -> str:
    cells = []
    for key in COLUMNS:
        ok, text = row.cells.get(key, (False, "not run"))
        cells.append(("ok: " if ok else "**FAIL**: ") + text.replace("|", "\\|"))
    return f"| {row.name} | " + " | ".join(cells) + " |"


def markdown(rows, kept: str = "") -> str:
    """The coverage table as Markdown: a cell is "ok: ..." or "**FAIL**: ...", with
    its figure or the error. The rows of the table in `kept` (an earlier file's
    text) whose model is not in `rows` are kept, in MODELS' order; a kept row from
    before a column was added gets that column's cell as "not run"."""
    header = ["| model | " + " | ".join(HEADERS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    name = lambda line: line[2:].split(" | ")[0]  # noqa: E731
    lines = {name(l): l for l in kept.split("\n")
             if l.startswith("| ") and not l.startswith("| model |")}
    for n, line in lines.items():
        missing = len(COLUMNS) + 1 - len(line[2:-2].split(" | "))
        lines[n] = line[:-2] + (" | **FAIL**: not run: this row predates the column; rerun "
                                f"tools/check_coverage.py --models='{n}'") * missing + " |"
    lines.update({row.name: _row_line(row) for row in rows})
    order = [n for n in MODELS if n in lines] + [n for n in lines if n not in MODELS]
    return "\n".join(header + [lines[n] for n in order])

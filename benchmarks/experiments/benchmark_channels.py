"""Channel pruning measured: MACs, file bytes, LiteRT latency, clean and PGD accuracy.

  python benchmarks/experiments/benchmark_channels.py --model=small_cnn \
      --data_path=../shared/data/mnist10k.npz --output_dir=runs/channels_mnist

Steps: a dense model is adversarially trained (PGD with `--train_steps`
steps); then for every FLOPs target and method, a pruned copy is made from it:

- `structured`: structured Deadwood. `DeadwoodModel` (distillation from the
  dense teacher plus adversarial training, per-example multipliers, dual step
  each epoch) on a student whose sparsity term is the group lasso over the
  channel groups (`channel_groups.group_lasso`) for `--solve_epochs`; then the
  global whole-group cut (`cut_channels`) to the FLOPs target; then
  `--finetune_epochs` with the masks fixed and no sparsity term.
- `l1_filter`: L1-norm filter pruning (Li et al., 2017): groups ranked by the
  L1 norm of their producers' filters, one-shot cut to the same FLOPs target,
  then adversarial fine-tuning for the same number of epochs.
- `unstructured`: unstructured Deadwood (`DeadwoodCallback`) at a weight
  sparsity equal to the FLOPs target: same training, no speed-up in a dense
  kernel (its latency is the dense file's).

Each channel-pruned model is shrunk (`shrink_model`, verified), saved, and
exported as dense float32 and int8 TFLite; `--round_to` adds rounded variants
of the structured model. All files are timed interleaved (benchmarks/experiments/time_tflite.py)
with 1 and 2 threads. Writes results.json and results.md to `--output_dir`.
"""

import glob
import json
import os
import sys
import platform
import time

import keras
from absl import app, flags

import deadwood_tf as dw
from deadwood_tf.benchmarks import baselines
from deadwood_tf import channel_groups as cg
from deadwood_tf import data as data_lib
from deadwood_tf import models as models_lib
from deadwood_tf import pipeline
from deadwood_tf.shrink import shrink_model
from deadwood_tf.litert import time_files

_MODEL = flags.DEFINE_string("model", "small_cnn", "models.MODELS name.")
_WIDTH = flags.DEFINE_integer("width", 0, "Model width (0: default).")
_DATA = flags.DEFINE_string("data_path", "../shared/data/mnist10k.npz", "An .npz.")
_NUM_TRAIN = flags.DEFINE_integer("num_train", 0, "Training examples (0: all).")
_NUM_TEST = flags.DEFINE_integer("num_test", 500, "Test examples for clean/PGD-20 accuracy.")
_EPS = flags.DEFINE_float("eps", 0.1, "L-inf radius of training and evaluation attacks.")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 3, "PGD steps of the training attack.")
_EVAL_STEPS = flags.DEFINE_integer("eval_steps", 20, "PGD steps of the evaluation attack.")
_DENSE_EPOCHS = flags.DEFINE_integer("dense_epochs", 4, "Adversarial training of the dense model.")
_SOLVE = flags.DEFINE_integer("solve_epochs", 1, "Epochs before the cut.")
_FINETUNE = flags.DEFINE_integer("finetune_epochs", 2, "Epochs after the cut.")
_RHO = flags.DEFINE_float("rho", 50.0, "Weight of the sparsity term (group lasso / L1).")
_TARGETS = flags.DEFINE_list("targets", ["0.25", "0.5", "0.75"], "FLOPs fractions removed.")
_METHODS = flags.DEFINE_list("methods", ["structured", "l1_filter", "unstructured"],
                             "Methods: structured, structured_macs, l1_filter, unstructured.")
_NORMALIZE = flags.DEFINE_string("normalize", "size", "Group score: size, macs or none.")
_ROUND = flags.DEFINE_list("round_to", ["8"], "Extra rounded variants of `structured`.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_LR = flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
_ROUNDS = flags.DEFINE_integer("rounds", 20, "Latency rounds (benchmarks/experiments/time_tflite.py).")
_OUTPUT = flags.DEFINE_string("output_dir", "runs/channels", "Where results go.")
_DENSE = flags.DEFINE_string("dense", "", "A trained dense .keras to start from (skip training).")


class DualStep(keras.callbacks.Callback):
    """The dual step of DeadwoodCallback, without its (unstructured) cut."""

    def on_epoch_begin(self, epoch, logs=None):
        self.model.reset_violations()

    def on_epoch_end(self, epoch, logs=None):
        self.model.dual_step(0.2, 0.2, 10.0)


def _fit(trainer, ds, epochs, callbacks=()):
    if epochs:
        trainer.fit(ds.train_pipeline(_BATCH.value, with_index=isinstance(trainer, dw.DeadwoodModel)),
                    epochs=epochs, verbose=2, callbacks=list(callbacks))


def _deadwood(student, teacher, attack, ds, rho, sparsity_term="l1"):
    model = dw.DeadwoodModel(student, teacher, attack=attack, sparsity_weight=rho,
                             num_examples=ds.num_train, sparsity_term=sparsity_term)
    model.compile(keras.optimizers.Adam(_LR.value))
    return model


def structured(dense, ds, target, attack, normalize=None):
    student = dw.prune_model(dense)
    groups = cg.channel_groups(student)
    # Omega = the group lasso over the channel groups.
    model = _deadwood(student, dense, attack, ds, _RHO.value, sparsity_term="group_lasso")
    _fit(model, ds, _SOLVE.value, [DualStep()])
    info = dw.cut_channels(student, target, normalize=normalize or _NORMALIZE.value,
                           groups=groups, round_to=1)
    model.sparsity_weight_variable.assign(0.0)  # fine-tune: rho = 0, multipliers kept
    _fit(model, ds, _FINETUNE.value, [DualStep()])
    return student, info


def l1_filter(dense, ds, target, attack):
    return baselines.l1_filter_at(dense, ds, target, attack=attack,
                                  epochs=_SOLVE.value + _FINETUNE.value,
                                  batch_size=_BATCH.value, learning_rate=_LR.value), {}


def unstructured(dense, ds, target, attack):
    student = dw.prune_model(dense)
    model = _deadwood(student, dense, attack, ds, _RHO.value)
    _fit(model, ds, _SOLVE.value + _FINETUNE.value,
         [dw.DeadwoodCallback(target, prune_epoch=_SOLVE.value, verbose=0)])
    return student, {"macs": cg.channel_groups(dense).total_macs, "sparsity": target}


def _accuracy(model, ds, eval_attack):
    r = dw.evaluate_robustness(model, ds.x_test, ds.y_test, [eval_attack])
    return {"clean": r["clean"], "pgd": r[eval_attack.name]}


def _export(model, tag, ds, tdir) -> dict:
    sizes = {}
    x = ds.x_test[:64]
    for quantize, suffix in ((None, "fp32"), ("int8", "int8")):
        path = os.path.join(tdir, f"{tag}_{suffix}.tflite")
        calibration = {"representative_data": ds.x_train[:256]} if quantize else {}
        info = dw.export_tflite(model, path, sparse=False, quantize=quantize, sample_inputs=x,
                                **calibration)
        sizes[f"bytes_{suffix}"] = info["bytes"]
    return sizes


def main(argv):
    del argv
    out = _OUTPUT.value
    tdir = os.path.join(out, "tflite")
    os.makedirs(tdir, exist_ok=True)
    # A random test subset: an .npz may be sorted by class (cifar10k is).
    ds = data_lib.load_dataset("npz", path=_DATA.value, num_train=_NUM_TRAIN.value,
                               num_test=_NUM_TEST.value)
    steps = _TRAIN_STEPS.value  # one step: FGSM with a random start (step = eps)
    train_attack = dw.PGD(_EPS.value, steps=steps, step_size=min(2.5 / steps, 1.0) * _EPS.value)
    eval_attack = dw.PGD(_EPS.value, steps=_EVAL_STEPS.value)
    started = time.time()
    if _DENSE.value:
        dense = keras.models.load_model(_DENSE.value)
    else:
        dense = models_lib.build_model(_MODEL.value, ds.input_shape, ds.num_classes,
                                       width=_WIDTH.value)
        if _DENSE_EPOCHS.value:
            pipeline.fit_adversarial(dense, train_attack, keras.optimizers.Adam(_LR.value),
                                     ds.train_pipeline(_BATCH.value, with_index=False),
                                     _DENSE_EPOCHS.value, verbose=2)
        dense.save(os.path.join(out, "dense.keras"))
    dense_macs = cg.channel_groups(dense).total_macs
    rows = [{"method": "dense", "target": 0.0, "macs": dense_macs,
             "params": dense.count_params(), **_accuracy(dense, ds, eval_attack),
             **_export(dense, "dense", ds, tdir), "tag": "dense"}]
    print(rows[-1], flush=True)
    methods = {"structured": structured, "l1_filter": l1_filter, "unstructured": unstructured,
               # the other group score, to measure which works better
               "structured_macs": lambda *a: structured(*a, normalize="macs")}
    for target in [float(t) for t in _TARGETS.value]:
        for name in _METHODS.value:
            pruned, info = methods[name](dense, ds, target, train_attack)
            row = {"method": name, "target": target, **_accuracy(pruned, ds, eval_attack)}
            if name == "unstructured":
                plain = dw.strip_pruning(pruned)
                plain.save(os.path.join(out, f"unstructured_{int(target * 100)}.keras"))
                row.update(macs=dense_macs, params=dense.count_params(),
                           sparsity=dw.sparsity_report(plain).sparsity, tag="dense")
                rows.append(row)
                print(row, flush=True)
                continue
            x = ds.x_test[:32]
            for round_to in [1] + [int(r) for r in _ROUND.value if name.startswith("structured")]:
                small = shrink_model(pruned, sample_inputs=x, round_to=round_to)
                tag = f"{name}_{int(target * 100)}" + (f"_r{round_to}" if round_to > 1 else "")
                small.save(os.path.join(out, f"{tag}.keras"))
                r = dict(row, round_to=round_to, tag=tag,
                         macs=cg.channel_groups(small).total_macs, params=small.count_params(),
                         **_export(small, tag, ds, tdir))
                rows.append(r)
                print(r, flush=True)
    paths = sorted(glob.glob(os.path.join(tdir, "*.tflite")))
    latency = time_files(paths, (1, 2), rounds=_ROUNDS.value)
    result = {"rows": rows, "latency_us": latency, "train_seconds": time.time() - started,
              "command": " ".join(sys.argv),
              "machine": f"{platform.machine()} {os.cpu_count()} CPUs (shared)",
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(markdown(result))
    print(markdown(result))


def markdown(result) -> str:
    lat = result["latency_us"]
    dense = {k: lat[t][f"dense_{k.split('_')[1]}.tflite"] for t in lat
             for k in (f"{t}_fp32", f"{t}_int8")} if lat else {}
    lines = ["| method | FLOPs cut | MACs | params | clean | PGD-20 | fp32 bytes | int8 bytes | "
             "fp32 1T µs (x) | int8 1T µs (x) | fp32 2T µs | int8 2T µs |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        cells = []
        for t in ("1", "2"):
            for q in ("fp32", "int8"):
                v = lat.get(t, {}).get(f"{r['tag']}_{q}.tflite")
                d = dense.get(f"{t}_{q}")
                cells.append("" if v is None else (f"{v:.0f} ({d / v:.2f}x)" if t == "1" else
                                                   f"{v:.0f}"))
        name = r["method"] + (f" r{r['round_to']}" if r.get("round_to", 1) > 1 else "")
        lines.append(f"| {name} | {r['target']:.2f} | {r['macs'] / 1e6:.2f}M | {r['params']} | "
                     f"{r['clean']:.3f} | {r['pgd']:.3f} | {r.get('bytes_fp32', '')} | "
                     f"{r.get('bytes_int8', '')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    app.run(main)

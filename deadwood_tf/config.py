"""The pipeline's settings: every field `train.train_and_evaluate` reads.

`configs/*.py` start from `default_config()` and change a few fields; any
field can be overridden on the command line (`--config.prune.target_sparsity=0.95`).
"""

from __future__ import annotations

import ml_collections


def default_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    # tf.distribute: one_device (no strategy: XLA stays on) | mirrored (this
    # machine's GPUs) | multi_worker (MultiWorkerMirroredStrategy, task from TF_CONFIG)
    c.strategy = "one_device"
    # Any keras.optimizers name (adam, adamw, sgd, rmsprop, ...); the learning
    # rates are per phase (teacher.learning_rate, deadwood.learning_rate).
    c.optimizer = "adam"

    c.data = ml_collections.ConfigDict()
    c.data.name = "digits"          # digits | mnist | fashion_mnist | cifar10 | npz
    c.data.path = ""                # .npz in Keras' layout, or of JPEG bytes (cifar10_jpeg.npz)
    c.data.num_train = 0            # 0: all
    c.data.num_test = 0
    c.data.batch_size = 128
    c.data.augment = False          # pad 4, random crop, horizontal flip (training only; images)

    c.model = ml_collections.ConfigDict()
    c.model.name = "small_cnn"      # mlp | lenet5 | small_cnn | vgg | resnet
    c.model.width = 0               # 0: the architecture's default
    c.model.depth = 0

    c.teacher_path = ""             # a trained .keras model; empty: train one
    c.teacher = ml_collections.ConfigDict()
    c.teacher.epochs = 8            # natural training
    c.teacher.adversarial_epochs = 6  # then adversarial training with `attack`
    c.teacher.learning_rate = 1e-3

    # The attack that makes training examples (teacher AT and Deadwood).
    c.attack = ml_collections.ConfigDict()
    c.attack.name = "pgd"           # pgd | fgsm
    c.attack.norm = "linf"
    c.attack.eps = 0.2
    c.attack.steps = 5
    c.attack.step_size = 0.05
    c.attack.random_start = True
    c.attack.clip_min = 0.0
    c.attack.clip_max = 1.0

    c.deadwood = ml_collections.ConfigDict()
    c.deadwood.fidelity_bound = 0.0
    c.deadwood.robustness_bound = 0.0
    c.deadwood.sparsity_weight = 50.0
    c.deadwood.label_weight = 0.0
    c.deadwood.temperature = 1.0
    c.deadwood.robust_target = "label"     # label | teacher
    c.deadwood.initial_multiplier = 1.0
    # separate: clean and adversarial inputs through the student as two batches (own
    # batch-norm statistics each) | joint: one batch; DeadwoodModel's `batch_norm`
    c.deadwood.batch_norm = "separate"
    c.deadwood.dual_step_size = 3.0
    c.deadwood.max_multiplier = 10.0
    c.deadwood.finetune_sparsity_weight = 0.0  # >= 0: rho after the final cut; < 0: keep rho
    c.deadwood.learning_rate = 1e-3

    c.prune = ml_collections.ConfigDict()
    c.prune.target_sparsity = 0.9
    c.prune.schedule = "gradual"    # gradual: cubic, global, at each solve epoch end | one_shot
    c.prune.power = 3
    c.prune.scope = "global"        # global | layer
    c.prune.min_keep = 0
    c.prune.pattern = ""            # "" | block "1x4", "4x4" (input x output axis) | N:M "2:4" | "channel" (target = MACs fraction; shrunk model)
    c.prune.round_to = 1            # channel: each layer keeps a multiple of it (8: SIMD-aligned, fast)
    c.prune.solve_epochs = 3
    c.prune.finetune_epochs = 3

    c.eval = ml_collections.ConfigDict()
    c.eval.eps = 0.2
    c.eval.fgsm = True
    c.eval.pgd_steps = 20
    c.eval.pgd_step_size = 0.02
    c.eval.num_examples = 0         # 0: the whole test set
    c.eval.per_epoch_examples = 500  # PGD accuracy after each epoch, on a subset
    c.eval.per_epoch_pgd_steps = 10

    c.export = ml_collections.ConfigDict()
    c.export.sparse = True
    c.export.quantize = ""          # "" | dynamic | float16 | int8 (calibrated on training inputs)

    # report.md's "before / after" table: the teacher is exported like the
    # student (teacher.tflite) and both files are timed with LiteRT, 1 and 2
    # threads, interleaved (`litert.time_files`).
    c.report = ml_collections.ConfigDict()
    c.report.latency_rounds = 10    # 0: no timing
    c.report.latency_invokes = 20   # single-example invokes per round
    return c


def _get(config, name: str):
    for part in name.split("."):
        config = config.get(part)
    return config


def _changed(config, name: str) -> bool:
    """Whether `config.<name>` differs from `default_config()`'s (set by a config or a flag)."""
    return _get(config, name) != _get(default_config(), name)


def inapplicable_fields(config) -> list[str]:
    """Warnings for fields set away from their default that the chosen dataset,
    model source, attack, schedule or strategy ignores (ignoring them is harmless
    to the run, but the user should know). One message per field, naming it."""
    import os

    out = []

    def ignored(fields, why):
        for name in fields:
            if _changed(config, name):
                out.append(f"`{name}` is ignored: {why}. Received: {name}={_get(config, name)!r}")

    if config.data.name == "digits":
        ignored(["data.path"], "data.name='digits' is scikit-learn's digits, not a file "
                "(use data.name='npz' for a file in Keras' layout)")
    if config.get("teacher_path"):
        ignored(["teacher.epochs", "teacher.adversarial_epochs", "teacher.learning_rate",
                 "model.name", "model.width", "model.depth"],
                f"the teacher is loaded from teacher_path={config.teacher_path!r}, which fixes "
                "the architecture and needs no training")
    if config.attack.name == "fgsm":
        ignored(["attack.steps", "attack.step_size", "attack.random_start"],
                "attack.name='fgsm' takes one step of size eps")
    if config.prune.schedule == "one_shot" or config.prune.solve_epochs == 0:
        ignored(["prune.power"], "the cut is one-shot (prune.schedule='one_shot' or "
                "prune.solve_epochs=0), so there is no gradual schedule")
    if config.report.latency_rounds == 0:
        ignored(["report.latency_invokes"], "report.latency_rounds=0 turns the timing off")
    if config.prune.finetune_epochs == 0:
        ignored(["deadwood.finetune_sparsity_weight"], "prune.finetune_epochs=0")
    if config.prune.schedule == "gradual" and config.prune.solve_epochs == 0 and \
            _changed(config, "prune.solve_epochs"):
        out.append("`prune.schedule`='gradual' needs solve epochs: with prune.solve_epochs=0 "
                   "the cut is one-shot, before fine-tuning")
    if config.get("strategy", "one_device") != "multi_worker" and os.environ.get("TF_CONFIG"):
        out.append(f"the environment variable `TF_CONFIG` is ignored: strategy="
                   f"{config.get('strategy', 'one_device')!r} (use strategy='multi_worker' to "
                   "train across the workers it lists)")
    return out

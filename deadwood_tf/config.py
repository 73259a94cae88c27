"""The pipeline's settings: every field `train.train_and_evaluate` reads.

`configs/*.py` start from `default_config()` and change a few fields; any
field can be overridden on the command line (`--config.prune.target_sparsity=0.95`).
"""

from __future__ import annotations

import ml_collections


def default_config() -> ml_collections.ConfigDict:
    """Every setting of the pipeline, at its default."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    # tf.distribute: one_device (no strategy: XLA stays on) | mirrored (this
    # machine's GPUs) | multi_worker (MultiWorkerMirroredStrategy, task from TF_CONFIG)
    c.strategy = "one_device"
    # Any keras.optimizers name (adam, adamw, sgd, rmsprop, ...); the learning
    # rates are per phase (teacher.learning_rate, deadwood.learning_rate).
    c.optimizer = "adam"
    c.data = _data()
    c.model = _model()
    c.teacher_path = ""             # a trained .keras model; empty: train one
    c.teacher = _teacher()
    c.attack = _attack()
    c.deadwood = _deadwood()
    c.prune = _prune()
    c.eval = _eval()
    c.export = _export()
    c.report = _report()
    return c


def _data() -> ml_collections.ConfigDict:
    s = ml_collections.ConfigDict()
    s.name = "digits"          # digits | mnist | fashion_mnist | cifar10 | npz
    s.path = ""                # .npz in Keras' layout, or of JPEG bytes (cifar10_jpeg.npz)
    s.num_train = 0            # 0: all
    s.num_test = 0
    s.batch_size = 128
    s.augment = False          # pad 4, random crop, horizontal flip (training only; images)
    return s


def _model() -> ml_collections.ConfigDict:
    s = ml_collections.ConfigDict()
    s.name = "small_cnn"      # mlp | lenet5 | small_cnn | vgg | resnet
    s.width = 0               # 0: the architecture's default
    s.depth = 0
    return s


def _teacher() -> ml_collections.ConfigDict:
    s = ml_collections.ConfigDict()
    s.epochs = 8            # natural training
    s.adversarial_epochs = 6  # then adversarial training with `attack`
    s.learning_rate = 1e-3
    return s


def _attack() -> ml_collections.ConfigDict:
    """The attack that makes training examples (teacher AT and Deadwood)."""
    s = ml_collections.ConfigDict()
    s.name = "pgd"           # pgd | fgsm
    s.norm = "linf"
    s.eps = 0.2
    s.steps = 5
    s.step_size = 0.05
    s.random_start = True
    s.clip_min = 0.0
    s.clip_max = 1.0
    return s


def _deadwood() -> ml_collections.ConfigDict:
    s = ml_collections.ConfigDict()
    s.fidelity_bound = 0.0
    s.robustness_bound = 0.0
    s.sparsity_weight = 50.0
    s.label_weight = 0.0
    s.temperature = 1.0
    s.robust_target = "label"     # label | teacher
    s.initial_multiplier = 1.0
    # separate: clean and adversarial inputs through the student as two batches (own
    # batch-norm statistics each) | joint: one batch; DeadwoodModel's `batch_norm`
    s.batch_norm = "separate"
    s.dual_step_size = 3.0
    s.max_multiplier = 10.0
    s.finetune_sparsity_weight = 0.0  # >= 0: rho after the final cut; < 0: keep rho
    s.learning_rate = 1e-3
    return s


def _prune() -> ml_collections.ConfigDict:
    s = ml_collections.ConfigDict()
    s.target_sparsity = 0.9
    s.schedule = "gradual"    # gradual: cubic, global, at each solve epoch end | one_shot
    s.power = 3
    s.scope = "global"        # global | layer
    s.min_keep = 0
    s.pattern = ""            # "" | block "1x4", "4x4" (input x output axis) | N:M "2:4" | "channel" (target = MACs fraction; shrunk model)
    s.round_to = 1            # channel: each layer keeps a multiple of it (8: SIMD-aligned, fast)
    s.solve_epochs = 3
    s.finetune_epochs = 3
    return s


def eval_attacks() -> ml_collections.ConfigDict:
    """The evaluation's attacks (`attacks.eval_attacks_from_config`): FGSM
    (`fgsm`) and PGD at `eps`; the `eval` section of the pipeline and the benchmark."""
    s = ml_collections.ConfigDict()
    s.eps = 0.2
    s.fgsm = True
    s.pgd_steps = 20
    s.pgd_step_size = 0.02
    return s


def _eval() -> ml_collections.ConfigDict:
    s = eval_attacks()
    s.num_examples = 0         # 0: the whole test set
    s.per_epoch_examples = 500  # PGD accuracy after each epoch, on a subset
    s.per_epoch_pgd_steps = 10
    return s


def _export() -> ml_collections.ConfigDict:
    s = ml_collections.ConfigDict()
    s.sparse = True
    s.quantize = ""          # "" | dynamic | float16 | int8 (calibrated on training inputs)
    return s


def _report() -> ml_collections.ConfigDict:
    """report.md's "before / after" table: the teacher is exported like the
    student (teacher.tflite) and both files are timed with LiteRT, 1 and 2
    threads, interleaved (`litert.time_files`)."""
    s = ml_collections.ConfigDict()
    s.latency_rounds = 10    # 0: no timing
    s.latency_invokes = 20   # single-example invokes per round
    return s


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

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
    c.data.path = ""                # .npz in Keras' layout (mnist, cifar10, npz)
    c.data.num_train = 0            # 0: all
    c.data.num_test = 0
    c.data.batch_size = 128

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
    c.deadwood.dual_step_size = 0.2
    c.deadwood.max_multiplier = 10.0
    c.deadwood.finetune_sparsity_weight = 0.0  # >= 0: rho after the final cut; < 0: keep rho
    c.deadwood.learning_rate = 1e-3

    c.prune = ml_collections.ConfigDict()
    c.prune.target_sparsity = 0.9
    c.prune.schedule = "gradual"    # gradual: cubic, global, at each solve epoch end | one_shot
    c.prune.power = 3
    c.prune.scope = "global"        # global | layer
    c.prune.min_keep = 0
    c.prune.pattern = ""            # "" | block "1x4", "4x4" (input x output axis) | N:M "2:4"
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
    return c


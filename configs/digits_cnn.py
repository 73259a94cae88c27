"""The offline default: scikit-learn's digits (8x8), a small CNN; minutes on 2 CPU cores."""

from deadwood_tf.config import default_config


def get_config():
    c = default_config()
    c.data.name = "digits"
    c.data.batch_size = 64
    c.model.name = "small_cnn"
    c.model.width = 32
    c.teacher.epochs = 15
    c.teacher.adversarial_epochs = 5
    c.teacher.learning_rate = 3e-3
    # 8x8 digits with 16 grey levels: eps 0.1 is a strong budget there.
    c.attack.eps = 0.1
    c.attack.step_size = 0.03
    c.eval.eps = 0.1
    c.eval.pgd_step_size = 0.01
    c.prune.target_sparsity = 0.9
    c.prune.solve_epochs = 5
    c.prune.finetune_epochs = 6
    return c

"""MNIST, the benchmark's reference protocol: CNN 225k, eps 0.2, PGD-5 in training.

Offline, point it at an .npz in Keras' layout:
  --config.data.path=../shared/data/mnist10k.npz
Without a path it downloads MNIST through keras.datasets.
"""

from deadwood_tf.config import default_config


def get_config():
    c = default_config()
    c.data.name = "mnist"
    c.data.batch_size = 128
    c.model.name = "small_cnn"
    c.model.width = 32
    c.teacher.epochs = 8
    c.teacher.adversarial_epochs = 6
    c.prune.target_sparsity = 0.95
    c.prune.solve_epochs = 3
    c.prune.finetune_epochs = 3
    c.eval.num_examples = 2000
    return c

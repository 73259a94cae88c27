"""CIFAR-10 with a ResNet-20: GPU scale. eps 8/255, PGD-7 in training (Madry et al.).

Offline, pass --config.data.path=cifar10.npz (Keras' layout); otherwise
keras.datasets.cifar10 downloads it.
"""

from deadwood_tf.config import default_config


def get_config():
    c = default_config()
    c.data.name = "cifar10"
    c.data.batch_size = 128
    c.model.name = "resnet"
    c.model.width = 16
    c.model.depth = 3
    c.teacher.epochs = 60
    c.teacher.adversarial_epochs = 40
    c.attack.eps = 8 / 255
    c.attack.steps = 7
    c.attack.step_size = 2 / 255
    c.eval.eps = 8 / 255
    c.eval.pgd_step_size = 2 / 255 / 2.5
    c.prune.target_sparsity = 0.9
    c.prune.solve_epochs = 10
    c.prune.finetune_epochs = 20
    c.eval.num_examples = 2000
    return c

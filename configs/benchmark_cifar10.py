"""The natural-image protocol on all of CIFAR-10 (docs/cifar10_protocol.md).

All 60,000 images of ../shared/data/cifar10_jpeg.npz: 45,000 training and
5,000 validation images (stratified by class, `data.split_seed` 0, the same
for every seed and method), the 10,000 test images. Standard augmentation in
training (zero-pad 4, random 32x32 crop, horizontal flip). ResNet-20 (width
16: 16/32/64 channels, 274k parameters). L-inf eps 8/255. Every method trains
against PGD-3 (step 2.5 * eps / 3, random start); after every adversarial
epoch a PGD-10 check on 1,000 validation images flags catastrophic
overfitting (`check_pgd`, `collapsed_epoch` in each row). Rows are evaluated
with PGD-20 (step 2/255, random start) and FGSM on all 10,000 test images.

Deadwood's settings and the peers' are still MNIST's here; they are to be
chosen on this protocol's validation split (`--config.split=validation`).

  PYTHONPATH=$PWD python tools/benchmark.py --config=configs/benchmark_cifar10.py \\
      --config.methods=dense_at --config.seeds=0
"""

from deadwood_tf.benchmarks.config import benchmark_config


def get_config():
    c = benchmark_config()
    c.protocol = "cifar10_resnet20"
    c.sparsities = (0.9,)
    c.seeds = (0, 1, 2)
    c.data.path = "../shared/data/cifar10_jpeg.npz"
    c.data.num_train = 0            # all 50,000; 5,000 of them are validation
    c.data.num_test = 0             # all 10,000
    c.data.validation = 5000
    c.data.split_seed = 0
    c.data.batch_size = 128
    c.data.augment = True
    c.model.name = "resnet"
    c.model.width = 16
    c.model.depth = 3
    # The dense models: 5 natural epochs, then 10 of PGD-3 adversarial training, each
    # phase with Adam's step decayed along a cosine (docs/cifar10_protocol.md: the budget).
    c.dense.epochs = 5
    c.dense.adversarial_epochs = 10
    c.dense.learning_rate = 2e-3
    c.dense.lr_schedule = "cosine"
    c.attack.name = "pgd"
    c.attack.eps = 8 / 255
    c.attack.steps = 3
    c.attack.step_size = 2.5 * (8 / 255) / 3
    c.attack.random_start = True
    c.eval.eps = 8 / 255
    c.eval.fgsm = True
    c.eval.pgd_steps = 20
    c.eval.pgd_step_size = 2 / 255
    # The catastrophic-overfitting check after each epoch of every adversarial fit.
    c.eval.per_epoch_examples = 1000
    c.eval.per_epoch_pgd_steps = 10
    # Pruning rows: 2 solve epochs (the gradual cut) + 1 fine-tune epoch.
    c.prune.solve_epochs = 2
    c.prune.finetune_epochs = 1
    c.worst.examples = 1000
    return c

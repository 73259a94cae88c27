"""A model XNNPack's sparse inference can use, so sparsity buys latency, not only bytes.

`models.mobilenet_xnnpack` (a 3x3 stride-2 stem, 1x1 convolutions, a spatial
mean) cut to 90% in blocks of 4 output channels (pattern "1x4", the blocks
XNNPack's sparse 1x1 kernels exploit), exported as float32 with sparse
storage: XNNPack needs float and at least 2/3 zeros in the 1x1 kernels.

  python tools/train.py --config=configs/mobilenet_xnnpack.py --workdir=runs/mobilenet \
      --config.data.path=../shared/data/mnist10k.npz
"""

from deadwood_tf.config import default_config


def get_config():
    c = default_config()
    c.data.name = "mnist"
    c.data.path = ""                # ../shared/data/mnist10k.npz offline
    c.data.batch_size = 128
    c.model.name = "mobilenet_xnnpack"
    c.model.width = 96
    c.model.depth = 4
    c.teacher.epochs = 6
    c.teacher.adversarial_epochs = 3
    c.prune.target_sparsity = 0.9
    c.prune.pattern = "1x4"
    c.prune.solve_epochs = 3
    # 1x4 blocks at 90% of a 34k-parameter network need a long fine-tune: with
    # 3 epochs this config reached 68.5% clean / 54.7% PGD-20 (teacher 96.2 / 68.8).
    c.prune.finetune_epochs = 8
    c.export.sparse = True
    c.export.quantize = ""          # float32: XNNPack's sparse kernels are float only
    return c

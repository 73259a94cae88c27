"""deadwood_tf: Deadwooding (Kaur, Fioretto, Salekin, 2022) for Keras 3.

Global one-shot pruning that keeps accuracy (distillation from the dense
teacher) and adversarial robustness (adversarial training), enforced by
per-example Lagrange multipliers.
"""

from deadwood_tf import attacks
from deadwood_tf.attacks import FGSM, PGD, AutoAttack, SquareAttack, evaluate_robustness
from deadwood_tf.callbacks import DeadwoodCallback
from deadwood_tf.deadwood_model import DeadwoodModel
from deadwood_tf.embedding_attack import EmbeddingAttack
from deadwood_tf.export import export_tflite, run_tflite
from deadwood_tf.prune import (
    SparsityReport,
    apply_sparsity,
    prune_model,
    pruned_weights,
    sparsity_report,
    strip_pruning,
)
from deadwood_tf.prune_registry import register_prunable
from deadwood_tf.channel_groups import cut_channels
from deadwood_tf.shrink import shrink_model

from deadwood_tf.provenance import VERSION as __version__

__all__ = [
    "DeadwoodCallback",
    "DeadwoodModel",
    "EmbeddingAttack",
    "AutoAttack",
    "SquareAttack",
    "FGSM",
    "PGD",
    "SparsityReport",
    "apply_sparsity",
    "attacks",
    "cut_channels",
    "evaluate_robustness",
    "export_tflite",
    "prune_model",
    "pruned_weights",
    "register_prunable",
    "run_tflite",
    "shrink_model",
    "sparsity_report",
    "strip_pruning",
]

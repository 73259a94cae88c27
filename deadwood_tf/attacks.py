"""Adversarial attacks and robustness evaluation, in one namespace.

An attack is a callable `attack(model_fn, x, y=None) -> x_adv`, where
`model_fn(x)` returns logits; it knows nothing of training loops, so the
training step and the evaluator use the same objects. The parts live in
their own modules:

- `gradient_attacks`: `FGSM` and `PGD` (cleverhans' tf2 attacks, run inside
  `tf.function`, for training and evaluation), their base `Attack`, and
  `logits_fn` / `outputs_fn`, the logits of a classifier that ends in a
  softmax (the trainer uses them too);
- `art_attacks`: ART's `SquareAttack`, `AutoAttack` and `APGD`, eager, for
  evaluation only;
- `robustness`: `evaluate_robustness`, clean and per-attack accuracy;
- `attack_config`: attacks by name (`make_attack`, `ATTACKS`) and from the
  pipeline's config (`from_config`, `eval_attacks_from_config`).

>>> PGD(eps=0.2, steps=20, step_size=0.02).name
'pgd20_linf_0.2'
>>> make_attack("apgd", 0.3, loss="dlr").name
'apgd_dlr100_linf_0.3'
>>> TRAINING_ATTACKS   # the ones a training step can run (inside tf.function)
('fgsm', 'pgd')
"""

from __future__ import annotations

from deadwood_tf.art_attacks import (
    APGD,
    ARTAttack,
    AutoAttack,
    DifferenceOfLogitsRatio,
    SquareAttack,
)
from deadwood_tf.attack_config import (
    ATTACKS,
    TRAINING_ATTACKS,
    eval_attacks_from_config,
    from_config,
    make_attack,
)
from deadwood_tf.gradient_attacks import (
    FGSM,
    PGD,
    Attack,
    logits_fn,
    outputs_fn,
    outputs_probabilities,
)
from deadwood_tf.robustness import evaluate_robustness

__all__ = [
    "APGD", "ARTAttack", "ATTACKS", "Attack", "AutoAttack", "DifferenceOfLogitsRatio", "FGSM",
    "PGD", "SquareAttack", "TRAINING_ATTACKS", "eval_attacks_from_config", "evaluate_robustness",
    "from_config", "logits_fn", "make_attack", "outputs_fn", "outputs_probabilities",
]

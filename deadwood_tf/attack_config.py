"""Attacks by name, and the attacks a pipeline config asks for.

The one place where attacks are built from names (configs, command lines):
`make_attack("pgd", 0.1, steps=7)`, `from_config(config.attack)` and
`eval_attacks_from_config(config)`, which knows the layout of the pipeline's
config (`configs/`, `deadwood_tf.config`). The attack modules themselves
know no config.

>>> make_attack("pgd", 0.1, steps=7).name
'pgd7_linf_0.1'
>>> from_config({"name": "fgsm", "eps": 0.2, "steps": 7}).name   # keys it does not take are left
'fgsm_linf_0.2'
"""

from __future__ import annotations

import inspect

from deadwood_tf.art_attacks import APGD, AutoAttack, SquareAttack
from deadwood_tf.gradient_attacks import FGSM, PGD, Attack

ATTACKS = {"fgsm": FGSM, "pgd": PGD, "square": SquareAttack, "apgd": APGD,
           "autoattack": AutoAttack}
# Those a training step can run (inside `tf.function`); ART's run eagerly, for evaluation only.
TRAINING_ATTACKS = tuple(name for name, cls in ATTACKS.items() if getattr(cls, "in_graph", True))


def make_attack(name: str, eps: float, **kwargs) -> Attack:
    """The attack called `name` (a key of `ATTACKS`) at radius `eps`.

    `kwargs` are the class's own arguments (`norm`, `steps`, `step_size`,
    `random_start`, `max_queries`, `loss`, `clip_min`, ...); an argument the
    class does not take is an error, so a misspelt setting cannot pass unseen.
    """
    if name not in ATTACKS:
        raise ValueError(f"Invalid value for argument `name`: expected one of {tuple(ATTACKS)}. "
                         f"Received: name={name!r}")
    cls = ATTACKS[name]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(f"Invalid arguments for the {name!r} attack: {unknown}; it takes "
                         f"{sorted(accepted)}. Received: {kwargs}")
    return cls(eps, **kwargs)


def from_config(c) -> Attack:
    """`make_attack` from a mapping (e.g. the pipeline's `config.attack`): its
    `name`, `eps` and whichever of the class's arguments it holds; other keys
    are ignored, so one config section can carry settings of several attacks."""
    c = dict(c)
    if "name" not in c or "eps" not in c:
        raise ValueError(f"Invalid attack config: expected keys `name` and `eps`. Received: {c}")
    cls = ATTACKS.get(c["name"])
    accepted = (set(inspect.signature(cls.__init__).parameters) - {"self", "eps"}
                if cls else set())
    return make_attack(c["name"], c["eps"], **{k: v for k, v in c.items() if k in accepted})


def eval_attacks_from_config(config) -> list:
    """The evaluation attacks of a pipeline or benchmark config: FGSM (when
    `eval.fgsm`), then PGD with `eval.pgd_steps` steps of `eval.pgd_step_size`
    and a random start, both at radius `eval.eps` with the norm and input
    range (`norm`, `clip_min`, `clip_max`) of the training attack `config.attack`."""
    e, a = config.eval, config.attack
    common = dict(norm=a.norm, clip_min=a.clip_min, clip_max=a.clip_max)
    out = [make_attack("fgsm", e.eps, **common)] if e.fgsm else []
    out.append(make_attack("pgd", e.eps, steps=e.pgd_steps, step_size=e.pgd_step_size,
                           random_start=True, **common))
    return out

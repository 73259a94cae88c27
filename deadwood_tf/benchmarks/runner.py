"""Runs benchmark rows: one (method, sparsity, seed) at a time, one JSON file each.

`run(config, results_dir, workdir)` trains and evaluates every (method,
sparsity, seed) of `config` that has no row file yet, in the order
seed -> sparsity -> method, and writes each finished row at once to
`<results_dir>/<protocol>/<method>_<sparsity>_seed<seed>.json` (validation
rows under `.../validation/`). A finished row is never rerun; a row file made
under different settings is refused rather than mixed in.

What a seed changes: the dense model's initialisation and its data order, the
pruning phase's data order, and every random draw during training (PGD's
random starts, HYDRA's scores). The validation split, the test split and the
architecture are the same for every seed. Per seed, one dense model and one
dense adversarially trained model are trained and shared by every method of
that seed (cached in `workdir`).

Every method after the dense models is a switch of the one Deadwood mechanism
(`DeadwoodModel` + `DeadwoodCallback`), except the external peers (tfmot,
HYDRA, PQuantML): see `METHODS`.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import hashlib
import json
import math
import os
import time

import keras
import ml_collections

from deadwood_tf import attacks as attacks_lib
from deadwood_tf import callbacks as callbacks_lib
from deadwood_tf import data as data_lib
from deadwood_tf import models as models_lib
from deadwood_tf import pipeline, prune
from deadwood_tf.atomic import save_model, write_json
from deadwood_tf.epoch_state import EpochState
from deadwood_tf.config import default_config
from deadwood_tf.provenance import machine, versions

SPLITS = ("test", "validation")


@dataclasses.dataclass(frozen=True)
class Method:
    label: str
    kind: str  # dense | dense_at | deadwood | tfmot | tfmot_at | hydra | pquant
    # Switches of the Deadwood mechanism: "section.field" -> value, plus
    # "per_example" (one multiplier per example or per constraint) and
    # "fidelity_multiplier" (the initial lam; 0 with no dual step: no distillation).
    switches: tuple = ()
    group: str = "deadwood"  # deadwood | ablation | peer | reference | structured
    # An external peer's settings: the config section ("tfmot", "pquant.mdmm")
    # whose fields are its function's arguments. It trains at the benchmark's
    # `deadwood.learning_rate` unless the section has its own `learning_rate`.
    section: str = ""


# Plain adversarial training is the Lagrangian with lam = 0, mu = 1 fixed, rho = 0
# and the label target: data term = mean CE(y, S(x~)).
_PLAIN_AT = (("deadwood.sparsity_weight", 0.0), ("deadwood.robust_target", "label"),
             ("deadwood.label_weight", 0.0), ("deadwood.robustness_bound", 0.0),
             ("deadwood.dual_step_size", 0.0), ("deadwood.initial_multiplier", 1.0),
             ("fidelity_multiplier", 0.0), ("deadwood.finetune_sparsity_weight", 0.0))

METHODS = {
    "dense": Method("dense, natural training", "dense", group="reference"),
    "dense_at": Method("dense, adversarially trained", "dense_at", group="reference"),
    # The ceiling a pruned row is measured against: the dense-AT model with the same
    # 6 more adversarial epochs a pruned row gets (6 + 6 in all), and no cut.
    "dense_at_long": Method("dense, adversarially trained for as many epochs as a pruned row",
                            "deadwood", _PLAIN_AT, group="reference"),
    "deadwood": Method("Deadwood (defaults: gradual global cut)", "deadwood"),
    "gradual_magnitude_at": Method(
        "gradual global magnitude + AT (Deadwood's schedule, no Lagrangian)", "deadwood",
        _PLAIN_AT, group="peer"),
    "global_magnitude_at": Method(
        "one-shot global magnitude + AT", "deadwood",
        _PLAIN_AT + (("prune.schedule", "one_shot"), ("prune.solve_epochs", 0)), group="peer"),
    "deadwood_one_shot": Method("Deadwood, one-shot cut after the solve phase", "deadwood",
                                (("prune.schedule", "one_shot"),), group="ablation"),
    "deadwood_frozen": Method("Deadwood, multipliers frozen (no dual step)", "deadwood",
                              (("deadwood.dual_step_size", 0.0),), group="ablation"),
    "deadwood_scalar": Method("Deadwood, one scalar multiplier per constraint", "deadwood",
                              (("per_example", False),), group="ablation"),
    "deadwood_no_l1": Method("Deadwood without the L1 term (rho 0)", "deadwood",
                             (("deadwood.sparsity_weight", 0.0),), group="ablation"),
    "tfmot_at": Method("tfmot per-layer magnitude + AT fine-tune", "tfmot_at", group="peer",
                       section="tfmot"),
    "tfmot": Method("tfmot per-layer magnitude + natural fine-tune", "tfmot", group="peer",
                    section="tfmot"),
    "hydra_global": Method("HYDRA, global variant (top-k over the network, |w| init, Adam)",
                           "hydra", group="peer", section="hydra"),
    "hydra": Method(
        "HYDRA as published (defaults: per-layer top-k, scaled score init, SGD momentum 0.9 "
        "+ L2 1e-4, cosine; 1 score + 5 fine-tune epochs; PGD-AT loss, theirs TRADES)", "hydra",
        group="peer", section="hydra_published"),
    "pquant_mdmm": Method(
        "PQuantML 0.1.0 MDMM (defaults: its config_mdmm.yaml, a sparsity constraint per "
        "layer; 5 pruning + 1 fine-tune epochs; no quantization; Adam, PGD-AT)", "pquant",
        group="peer", section="pquant.mdmm"),
    "pquant_pdp": Method(
        "PQuantML 0.1.0 PDP (defaults: its config_pdp.yaml but ramp 0.3 per epoch; soft "
        "top-k mask per layer; 5 pruning + 1 fine-tune epochs; no quantization; Adam, PGD-AT)",
        "pquant", group="peer", section="pquant.pdp"),
    # Channel pruning (issue 12): the row's sparsity is the fraction of MACs removed;
    # the model is shrunk (`shrink_model`) before it is scored, saved and counted.
    "deadwood_channel": Method(
        "structured Deadwood (group lasso, gradual global channel-group cut to a MACs fraction)",
        "deadwood", (("prune.pattern", "channel"),), group="structured"),
    "gradual_channel_at": Method(
        "gradual global channel-group cut + AT (Deadwood's schedule, no Lagrangian)", "deadwood",
        _PLAIN_AT + (("prune.pattern", "channel"),), group="structured"),
    "l1_filter_at": Method("L1-norm filter pruning (Li et al. 2017; global ranking, one shot) "
                           "+ AT", "l1_filter", group="structured"),
    # The same two with every layer kept at a multiple of 8 channels (`prune.round_to`):
    # widths SIMD kernels run at full speed.
    "deadwood_channel_r8": Method(
        "structured Deadwood, widths multiples of 8", "deadwood",
        (("prune.pattern", "channel"), ("prune.round_to", 8)), group="structured"),
    "l1_filter_at_r8": Method("L1-norm filter pruning + AT, widths multiples of 8", "l1_filter",
                              (("prune.round_to", 8),), group="structured"),
}
PRUNING_METHODS = tuple(m for m, v in METHODS.items() if v.group != "reference")


def _names(config):
    # `--config.methods=a,b` arrives as one string: accept commas as separators.
    names = [n.strip() for m in config.methods for n in str(m).split(",") if n.strip()]
    names = names or list(METHODS)
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise ValueError(f"Invalid value for `methods`: unknown {unknown}; expected names "
                         f"from {tuple(METHODS)}. Received: {names}")
    return names


def check_config(config):
    """`(methods, sparsities, seeds)` of `config`, checked (lists given as strings split)."""
    names = _names(config)
    if config.split not in SPLITS:
        raise ValueError(f"Invalid value for `split`: expected one of {SPLITS}. "
                         f"Received: {config.split!r}")
    seeds = [int(s) for s in (config.seeds if not isinstance(config.seeds, (int, str))
                              else str(config.seeds).split(","))]
    sparsities = [float(s) for s in (config.sparsities if not isinstance(config.sparsities, str)
                                     else config.sparsities.split(","))]
    for s in sparsities:
        if not 0.0 < s < 1.0:
            raise ValueError("Invalid value for `sparsities`: expected floats in (0, 1). "
                             f"Received: {sparsities}")
    return names, sparsities, seeds


# ---------------------------------------------------------------- data


def load_splits(config):
    """`(ds, validation, test)`: the training split with the validation set held
    out (stratified by class, `data.split_seed`; `validation` is None when
    `data.validation` is 0), and the test split, as `(x, y)` pairs. With
    `data.augment`, `ds.train_pipeline` augments (`data.augment_images`)."""
    from sklearn.model_selection import train_test_split

    d = config.data
    ds = data_lib.load_dataset(d.name, d.path, d.num_train, d.num_test, d.split_seed,
                               augment=d.get("augment", False))
    validation = None
    if d.validation:
        x_tr, x_val, y_tr, y_val = train_test_split(
            ds.x_train, ds.y_train, test_size=int(d.validation), stratify=ds.y_train,
            random_state=int(d.split_seed))
        ds, validation = dataclasses.replace(ds, x_train=x_tr, y_train=y_tr), (x_val, y_val)
    return ds, validation, (ds.x_test, ds.y_test)


def load_data(config):
    """`(ds, (x_eval, y_eval))`: `load_splits`' training split, and the split rows
    are evaluated on (`config.split`)."""
    ds, validation, test = load_splits(config)
    return ds, _evaluated_split(config, validation, test)


def _evaluated_split(config, validation, test):
    if config.split != "validation":
        return test
    if validation is None:
        raise ValueError("Invalid value for `data.validation`: split='validation' needs a "
                         "held-out set (data.validation > 0). Received: 0")
    return validation


# ---------------------------------------------------------------- bookkeeping


_LATER_FIELDS = {(None, "optimizer"): "adam",
                 ("deadwood", "batch_norm"): default_config().deadwood.batch_norm,
                 ("prune", "round_to"): 1, ("data", "augment"): False,
                 ("eval", "per_epoch_examples"): 0, ("eval", "per_epoch_pgd_steps"): 10,
                 ("dense", "lr_schedule"): "constant"}
DENSE_LR_SCHEDULES = ("constant", "cosine")


def _without_later_defaults(c: dict) -> dict:
    """`c` (a config as a dict) without the fields added after rows were made,
    where they hold their default: what those rows' hashes were computed from."""
    c = dict(c)
    for (section, field), default in _LATER_FIELDS.items():
        if section is None:
            if c.get(field, default) == default:
                c.pop(field, None)
            continue
        values = c.get(section)
        if isinstance(values, dict) and values.get(field, default) == default:
            c[section] = {k: v for k, v in values.items() if k != field}
    return c


def fingerprint(config, method=None) -> str:
    """Hash of every setting that changes a row's numbers.

    With `method`, only the settings that method reads, after its switches:
    the dense models read data, model, attack and dense; a switch of the
    Deadwood mechanism reads its effective `deadwood` and `prune` sections; the
    external peers read `prune`'s epochs, their own section (`Method.section`)
    and, unless that section has its own, the learning rate. So a change of
    Deadwood's defaults leaves the peers' rows valid (and the plain-AT
    controls', whose switches fix every Lagrangian setting).
    """
    c = config.to_dict()
    for key in ("methods", "sparsities", "seeds", "verbose", "worst"):
        c.pop(key, None)
    if method is not None:
        m = METHODS[method]
        keep = {k: c[k] for k in ("protocol", "split", "optimizer", "data", "model", "attack",
                                  "dense", "eval") if k in c}
        if m.kind == "deadwood":
            eff, extra = with_switches(config, m.switches)
            keep.update(deadwood=eff.deadwood.to_dict(), prune=eff.prune.to_dict(),
                        switches=sorted(extra.items()))
        elif m.group != "reference":
            section = _section(config, m.section).to_dict()
            prune_section = with_switches(config, m.switches)[0].prune.to_dict()
            keep.update(prune=prune_section, **({m.section: section} if m.section else {}))
            if "learning_rate" not in section:
                keep["learning_rate"] = c["deadwood"]["learning_rate"]
        c = keep
    # Rows made before a field existed ran with its default: at that value the field is
    # left out of the hash, so they stay valid.
    c = _without_later_defaults(c)
    return hashlib.sha256(json.dumps(c, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _section(config, name):
    """`config`'s section `name`, dotted for a nested one ("pquant.mdmm"); "": none."""
    if not name:
        return ml_collections.ConfigDict()
    for key in name.split("."):
        config = config[key]
    return config


def row_name(method, sparsity, seed, variant=""):
    tag = f"{method}{'-' + variant if variant else ''}"
    return f"{tag}_{sparsity:g}_seed{seed}"


def rows_dir(config, results_dir):
    out = os.path.join(results_dir, config.protocol)
    return os.path.join(out, "validation") if config.split == "validation" else out


def _finished(path, row_fingerprint):
    if not os.path.exists(path):
        return False
    row = json.load(open(path))
    if row.get("fingerprint") != row_fingerprint:
        raise ValueError(
            f"Invalid benchmark state: {path} was made under other settings (fingerprint "
            f"{row.get('fingerprint')}, now {row_fingerprint}). Rows of different settings must "
            "not be mixed: use another `protocol` (or `variant`) name, or delete the file.")
    return True


# ---------------------------------------------------------------- training


def _fit_verbose(config):
    return config.verbose


def _fit_callbacks(config, ds, title, check=None):
    """Progress lines (with `verbose`) and, for adversarial fits, the per-epoch
    PGD check on the validation subset `check` (`eval.per_epoch_examples`;
    catastrophic overfitting is flagged, not stopped). Returns `(callbacks,
    robust)`; `robust` is the check's callback or None."""
    out = [pipeline.progress(config, ds, title)] if config.verbose else []
    n = config.eval.get("per_epoch_examples", 0)
    if not n or check is None:
        return out, None
    robust = callbacks_lib.RobustAccuracy(check[0][:n], check[1][:n],
                                          pipeline.per_epoch_attack(config),
                                          name="val_pgd_check")
    return out + [robust], robust


def _check_summary(robust):
    """What a row records of its fit's per-epoch check."""
    if robust is None:
        return {}
    return {"check_pgd": robust.history, "collapsed_epoch": robust.collapsed_epoch}


def _dense_learning_rate(config, ds, epochs):
    """The optimizer's step in a dense phase of `epochs` epochs: `dense.learning_rate`,
    constant or (`dense.lr_schedule="cosine"`) decayed to 0 along a cosine
    over the phase's steps."""
    c = config.dense
    schedule = c.get("lr_schedule", "constant")
    if schedule not in DENSE_LR_SCHEDULES:
        raise ValueError(f"Invalid value for `dense.lr_schedule`: expected one of "
                         f"{DENSE_LR_SCHEDULES}. Received: {schedule!r}")
    if schedule == "constant" or not epochs:
        return c.learning_rate
    steps = math.ceil(ds.num_train / config.data.batch_size) * epochs
    return keras.optimizers.schedules.CosineDecay(c.learning_rate, decay_steps=steps)


def _natural_phase(config, ds, seed, path, folder):
    """The seed's dense model after its natural epochs, and `{"dense": seconds}`:
    trained and saved to `path`, or loaded when an earlier run saved it."""
    natural_meta = os.path.join(folder, "natural.json")
    keras.utils.set_random_seed(100 * seed)
    if os.path.exists(path) and os.path.exists(natural_meta):
        print(f"== seed {seed}: dense model after its natural epochs found ({path})", flush=True)
        return keras.models.load_model(path), {**json.load(open(natural_meta)),
                                               "dense_natural_loaded": True}
    model = models_lib.build_model(config.model.name, ds.input_shape, ds.num_classes,
                                   config.model.width, config.model.depth)
    c = config.dense
    print(f"== seed {seed}: dense model, {c.epochs} epochs natural + {c.adversarial_epochs} "
          f"adversarial ({model.count_params():,} parameters)", flush=True)
    t0 = time.time()
    pipeline.fit_natural(
        model, pipeline.make_optimizer(config, _dense_learning_rate(config, ds, c.epochs)),
        _phase_data(config, ds, seed, "natural"), c.epochs, verbose=_fit_verbose(config),
        callbacks=_fit_callbacks(config, ds, f"seed {seed} dense")[0])
    times = {"dense": time.time() - t0}
    save_model(model, path)
    write_json(natural_meta, times)
    return model, times


def _phase_data(config, ds, seed, phase, with_index=False):
    """The training batches of a phase of seed `seed`'s rows (`pipeline.PHASE_SEEDS`)."""
    return ds.train_pipeline(config.data.batch_size, 100 * seed + pipeline.PHASE_SEEDS[phase],
                             with_index=with_index)


def _dense_key(config, seed, check) -> str:
    """The dense models' cache key: what their training reads."""
    stripped = _without_later_defaults({"data": config.data.to_dict(),
                                        "dense": config.dense.to_dict()})
    optimizer = config.get("optimizer", "adam")
    return hashlib.sha256(json.dumps(
        [stripped["data"], config.model.to_dict(), config.attack.to_dict(), stripped["dense"],
         seed]
        # The per-epoch check draws random starts, so it changes the training that follows.
        + ([config.eval.per_epoch_examples, config.eval.get("per_epoch_pgd_steps", 10)]
           if config.eval.get("per_epoch_examples", 0) and check is not None else [])
        # Keys made before `optimizer` existed: Adam, left out.
        + ([optimizer] if optimizer != "adam" else []),
        sort_keys=True).encode()).hexdigest()[:12]


def _dense_models(config, ds, seed, workdir, check=None):
    """The seed's dense and dense adversarially trained models (cached): the
    pipeline's teacher phases (`pipeline.fit_natural`, then
    `pipeline.fit_adversarial`) with `config.dense`'s epochs and learning rate."""
    folder = os.path.join(workdir, config.protocol,
                          f"dense_seed{seed}_{_dense_key(config, seed, check)}")
    paths = {k: os.path.join(folder, f"{k}.keras") for k in ("dense", "dense_at")}
    meta = os.path.join(folder, "times.json")
    if all(os.path.exists(p) for p in [*paths.values(), meta]):
        return {k: keras.models.load_model(p) for k, p in paths.items()}, json.load(open(meta))
    model, times = _natural_phase(config, ds, seed, paths["dense"], folder)
    t0 = time.time()
    c = config.dense
    optimizer = pipeline.make_optimizer(config, _dense_learning_rate(config, ds,
                                                                     c.adversarial_epochs))
    callbacks, robust = _fit_callbacks(config, ds, f"seed {seed} dense_at", check)
    # Every adversarial epoch's state is kept, so a stopped run resumes at its next
    # epoch (from a fresh random stream: the resumed epochs are not the same draws).
    state = EpochState(os.path.join(folder, "dense_at_state"), model=model,
                       extra=lambda: {"check_pgd": robust.history if robust else []})
    first = state.restore(model, optimizer)
    data = _phase_data(config, ds, seed, "adversarial")
    if first or times.get("dense_natural_loaded"):
        print(f"== seed {seed}: dense_at resumes after epoch {first}", flush=True)
        keras.utils.set_random_seed(100 * seed + 1000 + first)
        times["dense_at_resumed_after_epoch"] = first
        if robust is not None:
            robust.history = list(state.extra.get("check_pgd", []))
        data = ds.train_pipeline(config.data.batch_size, 100 * seed + 1000 * first
                                 + pipeline.PHASE_SEEDS["adversarial"], with_index=False)
    pipeline.fit_adversarial(model, attacks_lib.from_config(config.attack), optimizer, data,
                             c.adversarial_epochs, initial_epoch=first,
                             verbose=_fit_verbose(config), callbacks=callbacks + [state])
    times["dense_at"] = times["dense"] + time.time() - t0
    times.update({f"dense_at_{k}": v for k, v in _check_summary(robust).items()})
    save_model(model, paths["dense_at"])
    write_json(meta, times)
    return {"dense": keras.models.load_model(paths["dense"]), "dense_at": model}, times


def with_switches(config, switches):
    """`(copy of config, extra)`: the copy with the dotted switches ("section.field",
    "section.sub.field") applied; `extra` the undotted ones (`per_example`, ...)."""
    c = copy.deepcopy(config)
    extra = {}
    for key, value in switches:
        if "." not in key:
            extra[key] = value
            continue
        node = c
        *sections, field = key.split(".")
        for section in sections:
            if section not in node:
                raise ValueError(f"Invalid setting {key!r}: the config has no section "
                                 f"{section!r}.")
            node = node[section]
        with node.unlocked():
            node[field] = value
    return c, extra


def make_deadwood_model(config, switches, teacher, num_train):
    """`(model, config, per_example)`: the compiled DeadwoodModel of a method's
    switches (`pipeline.make_deadwood_model` and `pipeline.compile_deadwood` of
    the switched config, the pipeline's own), that config, and whether it has
    one multiplier per example."""
    c, extra = with_switches(config, switches)
    per_example = extra.get("per_example", True)
    model = pipeline.make_deadwood_model(c, teacher, num_train, per_example=per_example,
                                         fidelity_multiplier=extra.get("fidelity_multiplier"))
    return pipeline.compile_deadwood(model, c), c, per_example


def _deadwood(config, switches, dense_at, ds, sparsity, seed, check=None, title=""):
    """The stripped model of a switch of the Deadwood mechanism, and what its
    per-epoch check recorded (`_check_summary`)."""
    model, c, per_example = make_deadwood_model(config, switches, dense_at, ds.num_train)
    # The budget comes from the unswitched config: a switch that moves the cut
    # (e.g. solve_epochs 0 for the one-shot control) must not shorten training.
    epochs = config.prune.solve_epochs + config.prune.finetune_epochs
    # After DeadwoodCallback: the check attacks the model as cut at that epoch's end.
    extra, robust = _fit_callbacks(c, ds, title, check)
    model.fit(_phase_data(c, ds, seed, "deadwood", with_index=per_example), epochs=epochs, verbose=_fit_verbose(c),
              callbacks=[pipeline.deadwood_callback(c, sparsity), *extra])
    return prune.strip_pruning(model), _check_summary(robust)


def _peer(method, config, dense_at, ds, sparsity, seed, callbacks=()):
    """An external peer's model; `callbacks` go to its fit where it takes Keras 3
    callbacks (L1-filter's; tfmot trains a tf_keras copy, HYDRA and PQuantML their own
    loops: they train without the progress lines and the per-epoch check)."""
    from deadwood_tf.benchmarks import baselines

    m = METHODS[method]
    config = with_switches(config, m.switches)[0]
    p, attack = config.prune, attacks_lib.from_config(config.attack)
    # The section's fields are the function's arguments (its own learning rate wins).
    kwargs = {**dict(epochs=p.solve_epochs + p.finetune_epochs,
                     batch_size=config.data.batch_size,
                     learning_rate=config.deadwood.learning_rate, seed=100 * seed + 2,
                     verbose=_fit_verbose(config)),
              **_section(config, m.section).to_dict()}
    if m.kind in ("tfmot", "tfmot_at"):
        return baselines.tfmot_magnitude(
            dense_at, ds, sparsity, model_name=config.model.name, width=config.model.width,
            depth=config.model.depth, attack=attack if m.kind == "tfmot_at" else None, **kwargs)
    if m.kind == "hydra":
        return baselines.hydra(dense_at, ds, sparsity, attack=attack, **kwargs)
    if m.kind == "pquant":
        return baselines.pquant(dense_at, ds, sparsity, method=m.section.split(".")[-1],
                                attack=attack, **kwargs)
    if m.kind == "l1_filter":
        return baselines.l1_filter_at(dense_at, ds, sparsity, attack=attack,
                                      round_to=p.get("round_to", 1), callbacks=callbacks,
                                      **kwargs)
    raise ValueError(f"Invalid method kind {m.kind!r} for {method!r}")


def _train_row(config, method, sparsity, seed, ds, dense, dense_times, check, x_eval):
    """`(model, train seconds, check summary)` of one row: a dense model, a switch
    of the Deadwood mechanism or a peer (channel rows: the shrunk model)."""
    m = METHODS[method]
    if m.kind in ("dense", "dense_at"):
        checked = {k[len("dense_at_"):]: v for k, v in dense_times.items()
                   if method == "dense_at" and k.startswith("dense_at_")}
        return dense[method], dense_times[method], checked
    t0 = time.time()
    keras.utils.set_random_seed(100 * seed + 3)
    title = f"seed {seed} {method} {sparsity:g}"
    if m.kind == "deadwood":
        model, checked = _deadwood(config, m.switches, dense["dense_at"], ds, sparsity, seed,
                                   check, title)
    else:
        extra, robust = _fit_callbacks(config, ds, title, check) \
            if m.kind == "l1_filter" else ([], None)
        model = _peer(method, config, dense["dense_at"], ds, sparsity, seed, extra)
        checked = _check_summary(robust)
    seconds = time.time() - t0
    if m.group == "structured":  # the physically smaller model (verified)
        from deadwood_tf.shrink import shrink_model

        model = shrink_model(model, sample_inputs=x_eval[:32])
    return model, seconds, checked


def run(config, results_dir: str, workdir: str, variant: str = "", provenance=None) -> list:
    """Trains and evaluates every missing row of `config`; returns the rows' paths.

    `variant` names a change of settings (a validation sweep): it goes into the
    row's name, so rows of different settings never share a file. `provenance`: more
    fields for every row (provenance such as the search that chose its settings).
    """
    names, sparsities, seeds = check_config(config)
    out_dir = rows_dir(config, results_dir)
    ds, validation, test = load_splits(config)
    x_eval, y_eval = _evaluated_split(config, validation, test)
    # The per-epoch check attacks validation images (never the test split).
    check = validation if config.eval.get("per_epoch_examples", 0) else None
    print(f"== benchmark {config.protocol} ({config.split} split, {len(x_eval)} examples; "
          f"{ds.num_train} training); methods {names}; sparsities {sparsities}; seeds {seeds}",
          flush=True)
    common = {"protocol": config.protocol, "split": config.split,
              "variant": variant, "num_train": ds.num_train, "num_eval": int(len(x_eval)),
              "config": config.to_dict(), "versions": versions(),
              "machine": {**machine(), "note": "2 CPU cores shared with other jobs"},
              **(provenance or {})}
    written = []
    for seed in seeds:
        todo = []
        for sparsity in sparsities:
            for method in names:
                pruning = METHODS[method].group != "reference"
                s = sparsity if pruning else 0.0
                path = os.path.join(out_dir, row_name(method, s, seed, variant) + ".json")
                if (method, s) not in [(m, q) for m, q, _ in todo] and \
                        not _finished(path, fingerprint(config, method)):
                    todo.append((method, s, path))
        if not todo:
            continue
        dense, dense_times = _dense_models(config, ds, seed, workdir, check)
        for method, sparsity, path in todo:
            m = METHODS[method]
            print(f"== {method} ({m.label}) -> sparsity {sparsity:g}, seed {seed}", flush=True)
            model, seconds, checked = _train_row(config, method, sparsity, seed, ds, dense,
                                                 dense_times, check, x_eval)
            t1 = time.time()
            row = {"method": method, "label": m.label, "group": m.group,
                   "target_sparsity": sparsity, "seed": seed, "train_seconds": seconds,
                   **pipeline.evaluate(config, model, x_eval, y_eval),
                   "eval_seconds": time.time() - t1, **checked,
                   "fingerprint": fingerprint(config, method),
                   "dense_macs": pipeline.model_size(dense["dense_at"])["macs"],
                   "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                       timespec="seconds"), **common}
            save_model(model, os.path.join(workdir, config.protocol, "models",
                                            f"{config.split}_{os.path.basename(path)[:-5]}.keras"))
            write_json(path, row)
            written.append(path)
            print(f"   {method} @ {sparsity:g} seed {seed}: clean {100 * row['clean']:.2f}  "
                  f"PGD {100 * row['pgd']:.2f}  sparsity {row['sparsity']:.4f}  "
                  f"{seconds:.0f} s train", flush=True)
    return written

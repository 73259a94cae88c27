"""Clean and PGD accuracy of Deadwood with `batch_norm="joint"` vs `"separate"`.

A small model with batch normalisation after every convolution is trained
naturally as the teacher, then pruned by Deadwood twice from the same teacher
with the same seed, budget and attack, once per mode; both students are
evaluated on a validation split held out of the training data (stratified,
fixed seed), never on the test split.

  python benchmarks/experiments/compare_batch_norm.py \
      --data=../shared/data/mnist10k.npz --seeds=0,1

Prints a Markdown table. Needs scikit-learn (the `test` extra) for the split.
"""

from absl import app, flags

_DATA = flags.DEFINE_string("data", "../shared/data/mnist10k.npz", "An .npz in Keras' layout.")
_VAL = flags.DEFINE_integer("validation", 1000, "Training images held out for validation.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Seeds of the Deadwood runs (one row pair each).")
# mobilenet_xnnpack's batch norms have momentum 0.9; the ResNet's (0.99) lag
# far behind the weights in so short a run: its dense teacher scored 18% on
# the validation split in inference mode (93% in training mode).
_MODEL = flags.DEFINE_string("model", "mobilenet_xnnpack", "A models.MODELS name with batch norm.")
_WIDTH = flags.DEFINE_integer("width", 32, "Model width (0: the model's default).")
_DEPTH = flags.DEFINE_integer("depth", 3, "Model depth (0: the model's default).")
_TEACHER_EPOCHS = flags.DEFINE_integer("teacher_epochs", 3, "Natural training epochs.")
_EPOCHS = flags.DEFINE_integer("epochs", 3, "Deadwood epochs (cut after the first).")
_SPARSITY = flags.DEFINE_float("sparsity", 0.5, "Target global sparsity.")
# At eps 0.1 (sparsity 0.8, 2 epochs) every student, either mode, still
# predicted one class: adversarial training had not left its first phase.
_EPS = flags.DEFINE_float("eps", 0.05, "L-inf radius of the training and evaluation attacks.")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 3, "PGD steps while training.")
_EVAL_STEPS = flags.DEFINE_integer("eval_steps", 20, "PGD steps of the evaluation attack.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Batch size.")


def main(argv):
    del argv
    import keras
    from sklearn.model_selection import train_test_split

    import deadwood_tf as dw
    from deadwood_tf import data, models

    ds = data.load_dataset("npz", path=_DATA.value)
    x_train, x_val, y_train, y_val = train_test_split(
        ds.x_train, ds.y_train, test_size=_VAL.value, stratify=ds.y_train, random_state=0)

    keras.utils.set_random_seed(0)
    teacher = models.build_model(_MODEL.value, x_train.shape[1:], ds.num_classes,
                                 width=_WIDTH.value, depth=_DEPTH.value)
    teacher.compile(keras.optimizers.Adam(1e-3),
                    keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=["accuracy"])
    history = teacher.fit(x_train, y_train, epochs=_TEACHER_EPOCHS.value,
                          batch_size=_BATCH.value, verbose=0)
    print(f"teacher training accuracy (last epoch): {history.history['accuracy'][-1]:.3f}")
    evaluation = [dw.PGD(_EPS.value, steps=_EVAL_STEPS.value)]
    dense = dw.evaluate_robustness(teacher, x_val, y_val, evaluation)

    rows = [("dense teacher (natural)", "-", dense)]
    for seed in (int(s) for s in _SEEDS.value):
        for mode in ("joint", "separate"):
            keras.utils.set_random_seed(seed)
            model = dw.DeadwoodModel(
                dw.prune_model(teacher), teacher, batch_norm=mode,
                attack=dw.PGD(_EPS.value, steps=_TRAIN_STEPS.value))
            model.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])
            model.fit(x_train, y_train, epochs=_EPOCHS.value, batch_size=_BATCH.value,
                      verbose=0, callbacks=[dw.DeadwoodCallback(_SPARSITY.value, prune_epoch=1,
                                                     finetune_sparsity_weight=0.0)])
            rows.append((f"Deadwood, batch_norm={mode!r}", seed,
                         dw.evaluate_robustness(model.student, x_val, y_val, evaluation)))

    attack = evaluation[0].name
    print(f"| model | seed | clean | {attack} |")
    print("|---|---|---|---|")
    for name, seed, result in rows:
        print(f"| {name} | {seed} | {100 * result['clean']:.1f} | {100 * result[attack]:.1f} |")


if __name__ == "__main__":
    app.run(main)

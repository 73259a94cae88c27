"""Clean and PGD accuracy of Deadwood with `batch_norm="joint"` vs `"separate"`.

A small ResNet (batch normalisation after every convolution) is trained
naturally as the teacher, then pruned by Deadwood twice from the same teacher
with the same seed, budget and attack, once per mode; both students are
evaluated on a validation split held out of the training data (stratified,
fixed seed), never on the test split.

  PYTHONPATH=$PWD python tools/compare_batch_norm.py \
      --data=../shared/data/mnist10k.npz --seeds=0,1

Prints a Markdown table. Needs scikit-learn (the `test` extra) for the split.
"""

from absl import app, flags

_DATA = flags.DEFINE_string("data", "../shared/data/mnist10k.npz", "An .npz in Keras' layout.")
_VAL = flags.DEFINE_integer("validation", 1000, "Training images held out for validation.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Seeds of the Deadwood runs (one row pair each).")
_WIDTH = flags.DEFINE_integer("width", 8, "ResNet width (channels of the first stage).")
_TEACHER_EPOCHS = flags.DEFINE_integer("teacher_epochs", 3, "Natural training epochs.")
_EPOCHS = flags.DEFINE_integer("epochs", 2, "Deadwood epochs (cut after the first).")
_SPARSITY = flags.DEFINE_float("sparsity", 0.8, "Target global sparsity.")
_EPS = flags.DEFINE_float("eps", 0.1, "L-inf radius of the training and evaluation attacks.")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 3, "PGD steps while training.")
_EVAL_STEPS = flags.DEFINE_integer("eval_steps", 20, "PGD steps of the evaluation attack.")
# Batch norm's moving statistics (momentum 0.99) need a few hundred steps to
# forget their initial values: with 110 steps of 128 the dense teacher scored
# 15% on the validation split in inference mode.
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
    teacher = models.resnet(x_train.shape[1:], ds.num_classes, width=_WIDTH.value, depth=1)
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
                      verbose=0, callbacks=[dw.DeadwoodCallback(_SPARSITY.value, prune_epoch=1)])
            rows.append((f"Deadwood, batch_norm={mode!r}", seed,
                         dw.evaluate_robustness(model.student, x_val, y_val, evaluation)))

    attack = evaluation[0].name
    print(f"| model | seed | clean | {attack} |")
    print("|---|---|---|---|")
    for name, seed, result in rows:
        print(f"| {name} | {seed} | {100 * result['clean']:.1f} | {100 * result[attack]:.1f} |")


if __name__ == "__main__":
    app.run(main)

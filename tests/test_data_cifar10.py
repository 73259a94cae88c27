"""Full CIFAR-10 from JPEG bytes: decoding, the cache, the split, the errors,
training augmentation, the per-epoch check and the progress lines.

Tiny synthetic files in the layout of ../shared/data/cifar10_jpeg.npz, made
here with Pillow, stand in for the real file (one test reads the real file
when it is there).
"""

import hashlib
import io
import json
import os
import shutil

import keras
import numpy as np
import pytest
from PIL import Image

from deadwood_tf import callbacks as callbacks_lib
from deadwood_tf import data as data_lib
from deadwood_tf.benchmarks import runner
from deadwood_tf.benchmarks.config import benchmark_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# ../shared/data beside the checkout; a worktree elsewhere names the folder in the variable.
REAL = os.path.join(os.environ.get("DEADWOOD_TF_SHARED_DATA",
                                   os.path.join(ROOT, "..", "shared", "data")), "cifar10_jpeg.npz")


def _jpegs(images):
    files = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=90)
        files.append(np.frombuffer(buffer.getvalue(), np.uint8))
    offsets = np.r_[0, np.cumsum([len(f) for f in files])].astype("int64")
    return np.concatenate(files), offsets


def _pillow(data, offsets):
    return np.stack([np.asarray(Image.open(io.BytesIO(data[a:b].tobytes())).convert("RGB"))
                     for a, b in zip(offsets[:-1], offsets[1:])])


def _sha(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _make_file(path, per_class=(6, 2), size=8, seed=0, drop=(), corrupt=None):
    """An .npz of JPEG bytes with `per_class` train/test images of each of 10
    classes; returns `(path, entry)`, `entry` as `data.JPEG_FILES` holds one,
    from Pillow's decode (so the loader is checked against Pillow)."""
    rng = np.random.default_rng(seed)
    arrays, entry = {}, {}
    for split, n in zip(("train", "test"), per_class):
        y = np.repeat(np.arange(10, dtype=np.uint8), n)
        rng.shuffle(y)
        # Smooth images, one colour per class plus noise: JPEG keeps them readable.
        base = np.linspace(0, 1, size)[None, :, None, None] * 120 + y[:, None, None, None] * 12
        images = np.clip(base + rng.normal(0, 20, (len(y), size, size, 3)), 0, 255)
        data, offsets = _jpegs(images.astype(np.uint8))
        entry[f"x_{split}"] = _sha(_pillow(data, offsets))
        if corrupt is not None and split == "train":
            data = data.copy()
            data[offsets[corrupt]:offsets[corrupt + 1]] = 7
        arrays.update({f"x_{split}_jpeg": data, f"x_{split}_offsets": offsets, f"y_{split}": y})
    for name in drop:
        del arrays[name]
    np.savez(path, **arrays)
    entry.update(name=os.path.basename(path), bytes=os.path.getsize(path))
    with open(path, "rb") as f:
        return str(path), {hashlib.sha256(f.read()).hexdigest(): entry}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(data_lib.CACHE_ENV, str(folder))
    return folder


def test_the_pixels_are_pillows_and_the_second_load_reads_the_cache(tmp_path, cache,
                                                                   monkeypatch):
    path, known = _make_file(tmp_path / "c.npz")
    (x_train, y_train), (x_test, y_test) = data_lib.load_jpeg_npz(path, known=known)
    raw = np.load(path)
    assert np.array_equal(x_train, _pillow(raw["x_train_jpeg"], raw["x_train_offsets"]))
    assert x_train.shape == (60, 8, 8, 3) and x_test.shape == (20, 8, 8, 3)
    assert x_train.dtype == np.uint8 and np.array_equal(y_test, raw["y_test"])
    (sha,) = known
    assert sorted(os.listdir(cache)) == [f"c-{sha[:16]}.npz", "manifest.json"]

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although the cache holds the arrays")

    monkeypatch.setattr(data_lib, "decode_jpegs", no_decoding)
    (again, _), _ = data_lib.load_jpeg_npz(path, known=known)
    assert np.array_equal(again, x_train)


def test_a_changed_file_never_reuses_the_cache_of_another(tmp_path, cache):
    first, known = _make_file(tmp_path / "c.npz", seed=0)
    x_first = data_lib.load_jpeg_npz(first, known=known)[0][0]
    # The same name, other pixels: its own sha256, so its own cache entry.
    changed, known_changed = _make_file(tmp_path / "c.npz", seed=1)
    x_changed = data_lib.load_jpeg_npz(changed, known=known_changed)[0][0]
    assert not np.array_equal(x_first, x_changed)
    assert len([n for n in os.listdir(cache) if n.endswith(".npz")]) == 2


def test_a_damaged_cache_is_decoded_again(tmp_path, cache):
    path, known = _make_file(tmp_path / "c.npz")
    x = data_lib.load_jpeg_npz(path, known=known)[0][0]
    (cached,) = [cache / n for n in os.listdir(cache) if n.endswith(".npz")]
    cached.write_bytes(cached.read_bytes()[:1000])
    assert np.array_equal(data_lib.load_jpeg_npz(path, known=known)[0][0], x)
    assert np.array_equal(np.load(cached)["x_train"], x)  # rewritten


def test_the_cache_folder_comes_from_the_argument_then_the_environment(tmp_path, cache):
    assert data_lib.cache_dir() == str(cache)
    assert data_lib.cache_dir(str(tmp_path / "mine")) == str(tmp_path / "mine")
    path, known = _make_file(tmp_path / "c.npz")
    data_lib.load_jpeg_npz(path, cache=str(tmp_path / "mine"), known=known)
    assert any(n.endswith(".npz") for n in os.listdir(tmp_path / "mine"))
    assert not os.path.exists(cache)


def test_a_truncated_or_unknown_file_names_the_path_the_expected_and_the_found(tmp_path,
                                                                              cache):
    path, known = _make_file(tmp_path / "c.npz")
    truncated = tmp_path / "cut.npz"
    truncated.write_bytes(open(path, "rb").read()[:2000])
    (sha,) = known
    with pytest.raises(ValueError, match=rf"{truncated} is not a known JPEG file.*Expected: "
                       rf"sha256 {sha} \({known[sha]['bytes']:,} bytes.*Received: sha256 "
                       r"[0-9a-f]{64} \(2,000 bytes\)\. It is smaller than c\.npz: truncated"):
        data_lib.load_jpeg_npz(str(truncated), known=known)
    with pytest.raises(FileNotFoundError, match=r"no file at '.*missing\.npz'"):
        data_lib.load_jpeg_npz(str(tmp_path / "missing.npz"), known=known)
    # A known file that is not an .npz at all.
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file" * 100)
    with pytest.raises(ValueError, match=rf"{junk} does not read as an \.npz"):
        data_lib.load_jpeg_npz(str(junk), known={hashlib.sha256(junk.read_bytes()).hexdigest():
                                                 {"bytes": 1400}})


def test_other_pixels_a_bad_image_and_missing_arrays_are_refused_clearly(tmp_path, cache):
    path, known = _make_file(tmp_path / "c.npz")
    (sha,) = known
    wrong = {sha: {**known[sha], "x_test": "0" * 64}}
    with pytest.raises(ValueError, match=r"Invalid pixels of `x_test` decoded from .*c\.npz: "
                       r"expected sha256 0{64} \(Pillow's decode\)\. Received: sha256 "
                       rf"{known[sha]['x_test']}"):
        data_lib.load_jpeg_npz(path, known=wrong)
    bad, known_bad = _make_file(tmp_path / "bad.npz", corrupt=3)
    with pytest.raises(ValueError, match=r"`x_train_jpeg` of .*bad\.npz: image 3 \(bytes "
                       r"[0-9,]+ to [0-9,]+\) is not a readable JPEG file"):
        data_lib.load_jpeg_npz(bad, known=known_bad)
    lacking, known_lacking = _make_file(tmp_path / "lacking.npz", drop=("y_test",))
    with pytest.raises(ValueError, match=r"lacking\.npz lacks arrays \['y_test'\]"):
        data_lib.load_jpeg_npz(lacking, known=known_lacking)


def test_a_jpeg_file_loads_through_the_pipeline_like_any_npz(tmp_path, cache, monkeypatch):
    path, known = _make_file(tmp_path / "c.npz")
    monkeypatch.setattr(data_lib, "JPEG_FILES", known)
    ds = data_lib.load_dataset("npz", path)
    assert ds.input_shape == (8, 8, 3) and ds.num_classes == 10 and ds.num_train == 60
    assert ds.x_train.dtype == np.float32 and 0.0 <= ds.x_train.min() < ds.x_train.max() <= 1.0


def _config(path, validation):
    c = benchmark_config()
    c.split = "test"
    c.data.name, c.data.path = "npz", path
    c.data.validation, c.data.split_seed = validation, 0
    return c


@pytest.mark.parametrize("per_class, validation", [(6, 10), (10, 30)])
def test_the_validation_split_is_stratified_fixed_and_held_out(tmp_path, cache, monkeypatch,
                                                               per_class, validation):
    # The protocol's 45,000 / 5,000 is this split with 5,000 per class and 5,000 held out.
    path, known = _make_file(tmp_path / "c.npz", per_class=(per_class, 2))
    monkeypatch.setattr(data_lib, "JPEG_FILES", known)
    c = _config(path, validation)
    ds, (x_val, y_val), (x_test, _) = runner.load_splits(c)
    assert ds.num_train == 10 * per_class - validation and len(x_val) == validation
    assert np.bincount(y_val, minlength=10).tolist() == [validation // 10] * 10
    assert np.bincount(ds.y_train, minlength=10).tolist() == \
        [per_class - validation // 10] * 10
    assert len(x_test) == 20
    train = {x.tobytes() for x in ds.x_train}
    assert not any(x.tobytes() in train for x in x_val)
    c.seeds = (7,)  # the training seed does not move the split
    assert np.array_equal(runner.load_splits(c)[1][0], x_val)


def _pipeline_images(ds, seed, epochs=2):
    pipeline = ds.train_pipeline(4, seed=seed)
    return [[(x.numpy(), i.numpy()) for x, _, i in pipeline] for _ in range(epochs)]


def test_augmentation_crops_and_flips_with_a_seeded_draw_per_epoch():
    x = np.random.default_rng(0).random((12, 6, 6, 2)).astype("float32")
    ds = data_lib.Dataset("t", x, np.arange(12) % 10, x[:3], np.arange(3), 10, augment=True)
    first, again, other = (_pipeline_images(ds, s) for s in (1, 1, 2))
    for a, b in zip(first, again):
        for (xa, ia), (xb, ib) in zip(a, b):
            assert np.array_equal(xa, xb) and np.array_equal(ia, ib)
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(first[0], first[1]))
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(first[0], other[0]))
    windows = 0
    for images, index in first[0]:
        assert images.shape[1:] == (6, 6, 2)
        for image, i in zip(images, index):
            padded = np.pad(x[i], ((4, 4), (4, 4), (0, 0)))  # zero padding
            crops = [padded[r:r + 6, c:c + 6] for r in range(9) for c in range(9)]
            assert any(np.array_equal(image, w) or np.array_equal(image, w[:, ::-1])
                       for w in crops)
            windows += not np.array_equal(image, x[i])
    assert windows > 6  # most images moved or flipped
    assert np.array_equal(ds.x_test, x[:3])  # evaluation data are never augmented
    plain = data_lib.Dataset("t", x, np.arange(12) % 10, x[:3], np.arange(3), 10)
    assert np.array_equal(np.sort(_pipeline_images(plain, 1, 1)[0][0][0].ravel()),
                          np.sort(x[_pipeline_images(plain, 1, 1)[0][0][1]].ravel()))


def test_augmentation_needs_images(tmp_path):
    path = str(tmp_path / "flat.npz")
    np.savez(path, x_train=np.full((20, 4), 0.5), y_train=np.arange(20) % 10,
             x_test=np.full((5, 4), 0.5), y_test=np.arange(5))
    with pytest.raises(ValueError, match=r"`data.augment`: padding, cropping and flipping need "
                       r"images \(n, h, w, c\)\. Received: inputs of shape \(4,\)"):
        data_lib.load_dataset("npz", path, augment=True)


def test_the_check_flags_catastrophic_overfitting_and_can_stop(monkeypatch):
    accuracies = iter([0.40, 0.42, 0.35, 0.15, 0.41])
    monkeypatch.setattr(callbacks_lib.attacks_lib, "evaluate_robustness",
                        lambda model, x, y, attacks: {attacks[0].name: next(accuracies)})
    attack = callbacks_lib.attacks_lib.make_attack("pgd", 0.1, steps=2)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    check = callbacks_lib.RobustAccuracy(np.zeros((3, 2)), np.zeros(3), attack,
                                         classifier=model, collapse_drop=0.2,
                                         stop_on_collapse=True)
    check.set_model(model)
    flags = []
    for epoch in range(5):
        logs = {}
        check.on_epoch_end(epoch, logs)
        flags.append(logs["catastrophic_overfitting"])
    assert check.history == [0.40, 0.42, 0.35, 0.15, 0.41]
    assert check.collapsed_epoch == 4 and flags == [0, 0, 0, 1, 1] and model.stop_training
    with pytest.raises(ValueError, match=r"`collapse_drop`: expected a fraction in \(0, 1\]"):
        callbacks_lib.RobustAccuracy(None, None, attack, collapse_drop=20)


def test_progress_lines_give_the_epoch_the_rate_and_the_eta():
    lines = []
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    x = np.zeros((40, 3), "float32")
    model.fit(x, np.zeros((40, 2)), batch_size=8, epochs=3, verbose=0,
              callbacks=[callbacks_lib.Progress(40, 8, "dense", every_seconds=0,
                                                print_fn=lines.append)])
    assert len(lines) == 3
    for k, line in enumerate(lines, 1):
        assert line.startswith(f"[dense] epoch {k}/3: ")
        assert (" images/s; fit ETA " if k < 3 else " images/s; fit done") in line
        assert line.endswith("this epoch)")
    with pytest.raises(ValueError, match="`num_examples`, `batch_size`: expected ints > 0"):
        callbacks_lib.Progress(0, 8)


def test_the_new_switches_leave_the_fingerprints_of_older_rows_alone(tmp_path):
    from conftest import tiny_benchmark_config as tiny

    c = tiny()
    before = {m: runner.fingerprint(c, m) for m in ("dense_at", "deadwood")}
    with c.unlocked():
        c.data.augment = False
        c.eval.per_epoch_examples = 0
        c.eval.per_epoch_pgd_steps = 10
        c.dense.lr_schedule = "constant"
    assert {m: runner.fingerprint(c, m) for m in before} == before
    for field, value in (("data.augment", True), ("eval.per_epoch_examples", 100),
                         ("dense.lr_schedule", "cosine")):
        changed = tiny()
        section, name = field.split(".")
        with changed.unlocked():
            changed[section][name] = value
        assert runner.fingerprint(changed, "dense_at") != before["dense_at"], field
    c.dense.lr_schedule = "linear"
    with pytest.raises(ValueError, match=r"`dense.lr_schedule`: expected one of \('constant', "
                       r"'cosine'\)\. Received: 'linear'"):
        runner._dense_learning_rate(c, data_lib.load_dataset("digits"), 2)


def test_rows_with_augmentation_record_the_per_epoch_check(tmp_path):
    from conftest import tiny_benchmark_config as tiny

    c = tiny()
    c.methods = ("dense_at,gradual_magnitude_at,l1_filter_at",)
    c.seeds = (0,)
    c.dense.epochs = 1
    c.data.num_train, c.data.validation, c.data.num_test = 300, 100, 50
    c.prune.finetune_epochs = 0
    c.eval.fgsm, c.eval.pgd_steps = False, 2
    with c.unlocked():
        c.data.augment = True
        c.eval.per_epoch_examples = 20
        c.eval.per_epoch_pgd_steps = 3
        c.dense.lr_schedule = "cosine"
    rows = {os.path.basename(p).rsplit("_", 2)[0]: p
            for p in runner.run(c, str(tmp_path / "r"), str(tmp_path / "w"))}
    dense_at = json.load(open(rows["dense_at"]))
    assert len(dense_at["check_pgd"]) == c.dense.adversarial_epochs
    assert dense_at["collapsed_epoch"] is None or dense_at["collapsed_epoch"] >= 1
    for method in ("gradual_magnitude_at", "l1_filter_at"):
        pruned = json.load(open(rows[method]))
        assert len(pruned["check_pgd"]) == c.prune.solve_epochs + c.prune.finetune_epochs
        assert all(0.0 <= a <= 1.0 for a in pruned["check_pgd"])


@pytest.mark.skipif(not os.path.exists(REAL), reason="../shared/data/cifar10_jpeg.npz is absent")
def test_the_real_file_decodes_to_the_documented_pixels(tmp_path):
    (x_train, y_train), (x_test, y_test) = data_lib.load_jpeg_npz(REAL, cache=str(tmp_path))
    assert x_train.shape == (50000, 32, 32, 3) and x_test.shape == (10000, 32, 32, 3)
    assert np.bincount(y_train).tolist() == [5000] * 10
    assert np.bincount(y_test).tolist() == [1000] * 10
    # The sha256 of ../shared/data/README.md, recomputed here.
    assert _sha(x_train) == "1f14abc92647ae20d547c59da4a5742e591746d7f370ac4cc6bae6ebc27294ed"
    assert _sha(x_test) == "2003fa2d3374143ee8692f0d88ca3887dad574014c362e85bcb949cb6caee3bf"
    shutil.rmtree(tmp_path)

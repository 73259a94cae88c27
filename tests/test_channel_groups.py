"""Channel groups from the graph, whole-group cuts, and shrink_model."""

import keras
import numpy as np
import pytest

import deadwood_tf as dw
from deadwood_tf import channel_groups as cg
from deadwood_tf import channel_impl
from deadwood_tf.shrink import shrink_model

L = keras.layers


def _randomize_norms(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32")
                               for w in layer.get_weights()])
        elif getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape).astype("float32"))
    return model


def residual():
    x = inp = keras.Input((8, 8, 3))
    x = L.ReLU()(L.BatchNormalization(name="bn0")(L.Conv2D(6, 3, padding="same", name="c0")(x)))
    y = L.Conv2D(5, 3, padding="same", name="c1")(x)
    y = L.BatchNormalization(name="bn1")(y)
    y = L.Conv2D(6, 3, padding="same", name="c2")(L.ReLU()(y))
    x = L.ReLU()(L.Add()([x, y]))
    x = L.GlobalAveragePooling2D()(x)
    return _randomize_norms(keras.Model(inp, L.Dense(4, name="logits")(x)))


def branches():
    """Concatenate, depthwise, pooling, flatten -> dense."""
    x = inp = keras.Input((8, 8, 2))
    a = L.Conv2D(3, 1, name="a")(x)
    b = L.Conv2D(4, 3, padding="same", activation="relu", name="b")(x)
    x = L.Concatenate()([a, b])
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.Conv2D(5, 1, name="pw")(x)
    x = L.MaxPooling2D()(x)
    x = L.Flatten()(x)
    x = L.Dense(7, activation="relu", name="fc")(x)
    return _randomize_norms(keras.Model(inp, L.Dense(3, name="logits")(x)))


def sequential():
    return _randomize_norms(keras.Sequential([
        keras.Input((8, 8, 1)),
        L.Conv2D(6, 3, activation="relu", name="conv1"),
        L.BatchNormalization(name="bn"),
        L.MaxPooling2D(),
        L.Flatten(),
        L.Dense(12, activation="relu", name="fc1"),
        L.Dense(10, name="logits"),
    ]))


def _group_with(groups, layer, index, role="output"):
    for g in groups.groups:
        for s in g.slices:
            if s.layer == layer and s.role == role and index in s.indices:
                return g
    return None


def _slices(group, layer, role):
    return [s for s in group.slices if s.layer == layer and s.role == role]


def test_add_ties_residual_producers_and_their_batch_norms():
    groups = cg.channel_groups(residual())
    g = _group_with(groups, "c0", 2)
    assert _group_with(groups, "c2", 2) is g            # tied by Add
    assert _slices(g, "bn0", "norm")[0].indices == (2,)
    # c2 and logits consume channel 2 of the residual stream
    assert _slices(g, "c1", "input")[0].indices == (2,)
    assert _slices(g, "logits", "input")[0].indices == (2,)
    # c1's channels are their own groups; logits' outputs are never grouped
    assert len(groups.groups) == 6 + 5
    assert _group_with(groups, "logits", 0) is None


def test_concat_offsets_depthwise_pass_through_and_flatten_expansion():
    groups = cg.channel_groups(branches())
    g = _group_with(groups, "b", 1)                    # channel 3 + 1 of the concat
    assert _slices(g, "dw", "depthwise")[0].indices == (4,)
    assert _slices(g, "pw", "input")[0].indices == (4,)
    assert _slices(g, "b", "bias")[0].indices == (1,)
    assert _slices(groups.groups[0], "dw", "depthwise")[0].indices == (0,)
    h = _group_with(groups, "pw", 2)                    # flatten: 4x4 positions of 5 channels
    assert _slices(h, "fc", "input")[0].indices == tuple(range(2, 80, 5))
    assert len(groups.groups) == 3 + 4 + 5 + 7


def test_macs_are_counted_per_layer():
    groups = cg.channel_groups(branches())
    expected = (64 * 2 * 3 + 64 * 9 * 2 * 4 + 64 * 9 * 7 + 64 * 7 * 5 + 80 * 7 + 7 * 3)
    assert groups.total_macs == expected
    g = _group_with(groups, "a", 0)      # a's output, dw's channel, pw's input
    assert g.macs == 64 * 2 + 64 * 9 + 64 * 5


@pytest.mark.parametrize("build, name", [
    (lambda x: L.Reshape((4, 16), name="reshape")(L.Conv2D(4, 1, name="p")(x)), "reshape"),
    (lambda x: L.Conv2D(4, 1, activation="sigmoid", name="sig")(x), "sig"),
    (lambda x: L.LayerNormalization(name="ln")(L.Conv2D(4, 1, name="p")(x)), "ln"),
])
def test_unanalysable_layers_are_refused_by_name(build, name):
    inp = keras.Input((4, 4, 3))
    x = build(inp)
    x = L.Dense(2, name="head")(L.Flatten()(x))
    with pytest.raises(ValueError, match=f"layer '{name}"):
        cg.channel_groups(keras.Model(inp, x))


def test_subclassed_models_are_refused():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(3)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(np.zeros((1, 4), "float32"))
    with pytest.raises(ValueError, match="subclassed"):
        cg.channel_groups(net)


def test_input_side_layers_need_no_analysis():
    inp = keras.Input((4, 4, 3))
    x = L.Rescaling(2.0, offset=-1.0)(inp)          # sees only the input's channels
    x = L.Flatten()(L.Conv2D(4, 1, name="p")(x))
    groups = cg.channel_groups(keras.Model(inp, L.Dense(2)(x)))
    assert len(groups.groups) == 4


def test_group_cut_keeps_old_cuts_and_reaches_the_flops_target():
    model = branches()
    pruned = dw.prune_model(model)
    groups = cg.channel_groups(pruned)
    first = dw.cut_channels(pruned, 0.3, groups=groups, round_to=1)
    cut1 = cg.zero_groups(pruned, groups)
    second = dw.cut_channels(pruned, 0.6, groups=groups, round_to=1)
    cut2 = cg.zero_groups(pruned, groups)
    assert np.all(cut2[cut1]) and cut2.sum() > cut1.sum()
    assert first["flops_removed"] >= 0.3 and second["flops_removed"] >= 0.6
    assert second["macs"] == groups.macs(~cut2)
    # every producer keeps a channel; the output layer keeps all
    for lc in groups.layers:
        if lc.kind == "kernel":
            assert np.sum((lc.out_groups < 0) | ~cut2[np.maximum(lc.out_groups, 0)]) >= 1


def test_groups_to_cut_ranks_by_score_and_guards_layers():
    # two layers of 2 channels each, groups 0,1 in layer 0 and 2,3 in layer 1
    tables = channel_impl.mac_tables([[-1], [0, 1]], [[0, 1], [2, 3]], [10, 1], [False, False], 4)
    assert channel_impl.macs(tables, np.ones(4, bool)) == 10 * 2 + 4
    cut = channel_impl.groups_to_cut([0.1, 0.0, 5.0, 6.0], np.zeros(4, bool), 0.7, tables)
    # group 1 first, then 0 would empty layer 0: skipped, then 2
    assert cut.tolist() == [False, True, True, False]
    cut = channel_impl.groups_to_cut([1, 2, 3, 4], np.zeros(4, bool), 0.5, tables, unit="channels")
    assert cut.tolist() == [True, False, True, False]


def test_aligned_cut_keeps_multiples_lowest_scores_first_and_reaches_the_target():
    # layer 0: 12 output channels (groups 0-11) from a fixed input; layer 1: 16
    # (groups 12-27) from them; layer 2 reads those and has 10 fixed outputs.
    tables = channel_impl.mac_tables(
        [[-1] * 3, list(range(12)), list(range(12, 28))],
        [list(range(12)), list(range(12, 28)), [-1] * 10], [9, 9, 1], [False] * 3, 28)
    scores = np.random.default_rng(0).uniform(size=28)
    dense = channel_impl.macs(tables, np.ones(28, bool))
    for target in (0.2, 0.4, 0.6):
        cut = channel_impl.groups_to_cut(scores, np.zeros(28, bool), target, tables,
                                         multiple=8)
        widths = [int((~cut[:12]).sum()), int((~cut[12:]).sum())]
        assert widths[0] in (12, 8) and widths[1] in (16, 8), widths
        assert 1 - channel_impl.macs(tables, ~cut) / dense >= target
        for family in (slice(0, 12), slice(12, 28)):  # within a layer, lowest scores go
            s, c = scores[family], cut[family]
            assert not c.any() or c.all() or s[c].max() <= s[~c].min()
    # no layer below `multiple`: at most 12->8 and 16->8 can go
    cut = channel_impl.groups_to_cut(scores, np.zeros(28, bool), 0.95, tables, multiple=8)
    assert int((~cut[:12]).sum()) == 8 and int((~cut[12:]).sum()) == 8
    with pytest.raises(ValueError, match="`round_to`"):
        channel_impl.groups_to_cut(scores, np.zeros(28, bool), 0.5, tables, multiple=0)


def test_cut_channels_round_to_gives_aligned_widths_that_shrink_exactly():
    x = inp = keras.Input((8, 8, 3))
    x = L.Conv2D(12, 3, padding="same", activation="relu", name="c0")(x)
    x = L.Conv2D(20, 3, padding="same", activation="relu", name="c1")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = _randomize_norms(keras.Model(inp, L.Dense(4, name="logits")(x)))
    pruned = dw.prune_model(model)
    info = dw.cut_channels(pruned, 0.4, round_to=8)
    assert info["flops_removed"] >= 0.4
    x = np.random.default_rng(1).uniform(0, 1, (8, 8, 8, 3)).astype("float32")
    small = shrink_model(pruned, sample_inputs=x)
    widths = [l.filters for l in small.layers if isinstance(l, L.Conv2D)]
    assert widths[0] in (12, 8) and widths[1] in (20, 16, 8) and widths != [12, 20], widths
    ref = keras.ops.convert_to_numpy(pruned(x))
    assert np.max(np.abs(keras.ops.convert_to_numpy(small(x)) - ref)) <= 1e-5
    with pytest.raises(ValueError, match="`round_to`"):
        dw.apply_sparsity(dw.prune_model(model), 0.5, round_to=8)  # unstructured: refused
    with pytest.raises(ValueError, match="`round_to`"):
        dw.DeadwoodCallback(0.5, round_to=8)
    with pytest.raises(ValueError, match="`round_to`"):
        dw.DeadwoodCallback(0.5, pattern="channel", unit="macs", round_to=0)


def test_scores_divide_by_size_or_macs():
    s = channel_impl.group_scores([4.0, 4.0], [2, 4], [10, 40], "size")
    assert s.tolist() == [2.0, 1.0]
    assert channel_impl.group_scores([4.0, 4.0], [2, 4], [10, 40], "macs").tolist() == [0.4, 0.1]
    with pytest.raises(ValueError, match="`normalize`"):
        channel_impl.group_scores([1.0], [1], [1], "l3")


@pytest.mark.parametrize("build", [residual, branches, sequential])
def test_shrunk_model_matches_the_masked_one_and_is_smaller(build, tmp_path):
    model = build()
    pruned = dw.prune_model(model)
    # The score that cuts parameters most.
    dw.cut_channels(pruned, 0.5, normalize="size", round_to=1)
    x = np.random.default_rng(1).uniform(0, 1, (16, *model.input_shape[1:])).astype("float32")
    small = shrink_model(pruned, sample_inputs=x)
    ref = keras.ops.convert_to_numpy(pruned(x))
    assert np.max(np.abs(keras.ops.convert_to_numpy(small(x)) - ref)) <= 1e-5
    assert small.count_params() < 0.75 * model.count_params()
    assert cg.channel_groups(small).total_macs <= 0.5 * cg.channel_groups(model).total_macs
    path = str(tmp_path / "small.keras")
    small.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert np.max(np.abs(keras.ops.convert_to_numpy(loaded(x)) - ref)) <= 1e-5


def test_rounding_keeps_multiples_and_stays_exact():
    model = residual()
    pruned = dw.prune_model(model)
    dw.cut_channels(pruned, 0.5, round_to=1)
    small = shrink_model(pruned, round_to=4)
    widths = [l.filters for l in small.layers if isinstance(l, L.Conv2D)]
    full = [6, 5, 6]
    assert all(w % 4 == 0 or w == f for w, f in zip(widths, full))
    assert widths != full
    with pytest.raises(ValueError, match="`round_to`"):
        shrink_model(pruned, round_to=0)


def test_shrink_stays_exact_when_fine_tuning_moves_a_cut_channels_beta():
    model = residual()
    pruned = dw.prune_model(model)
    groups = cg.channel_groups(pruned)
    dw.cut_channels(pruned, 0.5, groups=groups, round_to=1)
    cut = np.flatnonzero(cg.zero_groups(pruned, groups))
    moved = 0
    for i in cut:  # as fine-tuning would: beta and bias of cut channels move
        for sl in groups.groups[i].slices:
            if sl.weight in ("beta", "bias"):
                var = getattr(pruned.get_layer(sl.layer), sl.weight)
                value = np.array(var.numpy())
                value[list(sl.indices)] = 0.5
                var.assign(value)
                moved += 1
    assert moved >= len(cut)
    x = np.random.default_rng(3).uniform(0, 1, (8, 8, 8, 3)).astype("float32")
    small = shrink_model(pruned, sample_inputs=x)  # raises beyond 1e-5
    assert len(cg.channel_groups(small).groups) == len(groups.groups) - len(cut)


@pytest.mark.parametrize("seed, widened", [
    (1, []),
    # c1 is cut to 1 channel that is dead (ReLU of a negative) on these inputs:
    # the converter scales it ~1e-8, which XNNPack refuses unless widened.
    (4, ["c1"]),
])
def test_shrunk_model_exports_dense_float_and_int8(tmp_path, seed, widened):
    keras.utils.set_random_seed(seed)
    pruned = dw.prune_model(residual())
    # The cut that leaves c1 1 channel.
    dw.cut_channels(pruned, 0.5, normalize="size", round_to=1)
    small = shrink_model(pruned)
    x = np.random.default_rng(2).uniform(0, 1, (32, 8, 8, 3)).astype("float32")
    for quantize in (None, "int8"):
        info = dw.export_tflite(small, str(tmp_path / f"s{quantize}.tflite"), sparse=False,
                                quantize=quantize, sample_inputs=x)
        assert info["runs_on_default_interpreter"]
        assert info["widened_for_xnnpack"] == (widened if quantize else [])
        y = dw.run_tflite(info["path"], x)
        assert y.shape == (32, 4)
        assert info["top1_agreement"] >= 0.9


def test_group_lasso_is_the_weighted_sum_of_group_norms_and_ignores_cut_groups():
    import tensorflow as tf

    pruned = dw.prune_model(residual())
    groups = cg.channel_groups(pruned)
    dw.cut_channels(pruned, 0.4, groups=groups, round_to=1)
    term = cg.group_lasso(pruned, groups)
    sizes = np.array([g.size for g in groups.groups])
    expected = np.sum(np.sqrt(cg.group_energies(pruned, groups) * sizes)) / sizes.sum()
    weights = [w for w, _ in dw.prune.pruned_weights(pruned)]
    with tf.GradientTape() as tape:
        value = term()
    assert float(value) == pytest.approx(expected, rel=1e-5)
    grads = tape.gradient(value, weights)
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)  # cut groups: sqrt at 0


def test_filter_l1_norms_read_the_producers_filters():
    pruned = dw.prune_model(branches())
    groups = cg.channel_groups(pruned)
    norms = cg.filter_l1_norms(pruned, groups)
    kernel = pruned.get_layer("b").kernel.numpy()
    g = _group_with(groups, "b", 2)
    assert norms[g.index] == pytest.approx(np.abs(kernel[..., 2]).sum(), rel=1e-6)


def test_layer_score_ranks_each_group_against_its_own_layer():
    from deadwood_tf.masks import mask_of

    model = residual()
    c1 = model.get_layer("c1")
    c1.kernel.assign(c1.kernel * 0.01)  # one layer's weights 100x smaller
    kept = {}
    for normalize in ("layer", "size"):
        pruned = dw.prune_model(model)
        dw.cut_channels(pruned, 0.5, normalize=normalize, round_to=1)
        mask = keras.ops.convert_to_numpy(mask_of(pruned.get_layer("c1").kernel))
        kept[normalize] = int(np.sum(np.any(mask != 0, axis=(0, 1, 2))))
    assert kept["size"] == 1 and kept["layer"] >= 3  # "size" empties the small layer


def test_filter_l1_ranks_per_layer_cut_the_same_fraction_of_each_layer_lowest_first():
    pruned = dw.prune_model(branches())
    groups = cg.channel_groups(pruned)
    norms = cg.filter_l1_norms(pruned, groups)
    ranks = cg.filter_l1_norms(pruned, groups, per_layer=True)
    families = {}
    for g in groups.groups:
        families.setdefault(tuple(sorted({l for l, _ in g.channels})), []).append(g.index)
    assert len(families) > 1
    for members in families.values():
        m = np.asarray(members)
        assert sorted(ranks[m]) == pytest.approx((np.arange(len(m)) + 1) / len(m))
        assert np.all(np.diff(norms[m][np.argsort(ranks[m])]) >= 0)  # rank follows L1
    dw.cut_channels(pruned, 0.5, normalize="none", groups=groups, energies=ranks,
                    round_to=1)
    cut = cg.zero_groups(pruned, groups)
    fractions = [cut[np.asarray(m)].mean() for m in families.values()]
    assert max(fractions) - min(fractions) <= max(1 / len(m) for m in families.values()) + 1e-9


def test_apply_sparsity_channel_pattern_cuts_flops_and_keep_masks_refuses_it():
    pruned = dw.prune_model(branches())
    removed = dw.apply_sparsity(pruned, 0.5, pattern="channel", unit="macs", round_to=1)
    assert removed >= 0.5
    assert cg.zero_groups(pruned, cg.channel_groups(pruned)).any()
    with pytest.raises(ValueError, match="`scope`"):
        dw.apply_sparsity(pruned, 0.6, scope="layer", pattern="channel", unit="macs")
    from deadwood_tf import pruning_impl

    with pytest.raises(ValueError, match="channel"):
        pruning_impl.keep_masks([np.ones((3, 3))], 0.5, pattern="channel")


def test_structured_deadwood_trains_cuts_groups_and_shrinks(digits):
    x, y, _, _ = digits
    inp = keras.Input((8, 8, 1))
    h = L.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inp)
    h = L.BatchNormalization(name="bn")(h)
    h = L.Dense(16, activation="relu", name="fc")(L.Flatten()(L.MaxPooling2D()(h)))
    teacher = keras.Model(inp, L.Dense(10, name="logits")(h))
    student = dw.prune_model(teacher)
    model = dw.DeadwoodModel(student, teacher, attack=dw.FGSM(0.05),
                             sparsity_term="group_lasso", sparsity_weight=1.0)
    model.compile(keras.optimizers.Adam(1e-3))
    history = model.fit(x[:256], y[:256], epochs=2, batch_size=64, verbose=0, callbacks=[
        dw.DeadwoodCallback(0.5, prune_epoch=1, pattern="channel", unit="macs", round_to=1,
                            verbose=0)])
    assert history.history["flops_removed"][-1] >= 0.5
    groups = cg.channel_groups(student)
    assert model.get_config()["sparsity_term"] == "group_lasso"
    small = shrink_model(model, sample_inputs=x[:16])
    assert cg.channel_groups(small).total_macs <= 0.5 * groups.total_macs
    with pytest.raises(ValueError, match="`sparsity_term`"):
        dw.DeadwoodModel(student, teacher, attack=None, sparsity_term="block")


def _wide():
    x = inp = keras.Input((8, 8, 3))
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="c0")(x)
    x = L.Conv2D(24, 3, padding="same", activation="relu", name="c1")(x)
    x = L.GlobalAveragePooling2D()(x)
    return _randomize_norms(keras.Model(inp, L.Dense(4, name="logits")(x)))


def test_channel_cuts_keep_multiples_of_8_by_default():
    pruned = dw.prune_model(_wide())
    info = dw.cut_channels(pruned, 0.4)
    assert info["flops_removed"] >= 0.4
    small = shrink_model(pruned)
    widths = [l.filters for l in small.layers if isinstance(l, L.Conv2D)]
    assert all(w % 8 == 0 for w in widths) and widths != [16, 24], widths
    # The same default through the callback and apply_sparsity; 1 stays possible.
    assert dw.DeadwoodCallback(0.5, pattern="channel", unit="macs").round_to == 8
    assert dw.DeadwoodCallback(0.5).round_to == 1  # weight cuts: no alignment
    single = dw.prune_model(_wide())
    dw.apply_sparsity(single, 0.4, pattern="channel", unit="macs", round_to=1)
    widths = [l.filters for l in shrink_model(single).layers if isinstance(l, L.Conv2D)]
    assert any(w % 8 for w in widths), widths


def test_channel_targets_say_what_they_count_and_old_forms_warn():
    pruned = dw.prune_model(_wide())
    with pytest.warns(DeprecationWarning, match="unit='macs'"):
        removed = dw.apply_sparsity(pruned, 0.3, pattern="channel")
    assert removed >= 0.3  # still a fraction of MACs
    with pytest.warns(DeprecationWarning, match="unit='macs'"):
        assert dw.DeadwoodCallback(0.5, pattern="channel").unit == "macs"
    with pytest.warns(DeprecationWarning, match="'macs'"):
        old = dw.cut_channels(dw.prune_model(_wide()), 0.3, unit="flops")
    assert old == dw.cut_channels(dw.prune_model(_wide()), 0.3, unit="macs")
    groups = dw.prune_model(_wide())
    share = dw.apply_sparsity(groups, 0.5, pattern="channel", unit="channels", round_to=1)
    assert share == pytest.approx(0.5, abs=1 / 40)  # half of the 40 channel groups
    with pytest.raises(ValueError, match=r"`unit`.*Received: unit='macs'"):
        dw.DeadwoodCallback(0.5, unit="macs")  # weight cuts count weights
    with pytest.raises(ValueError, match="`unit`"):
        dw.apply_sparsity(dw.prune_model(_wide()), 0.5, pattern="channel", unit="weights")

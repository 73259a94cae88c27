"""Throughput of Deadwood training on one device, two logical CPU devices
(MirroredStrategy) and two worker processes (MultiWorkerMirroredStrategy on
127.0.0.1), and the bytes each step hands to collectives.

  python benchmarks/experiments/benchmark_distribute.py [--examples=1400 --batch=128 --epochs=3]

Each configuration runs in its own process (logical devices and collective ops
must be set before TensorFlow starts). Throughput: examples per second over the
epochs after the first (tracing excluded). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _run(args):
    import numpy as np
    import tensorflow as tf

    strategy = None
    if args.mode == "multi_worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif args.mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    import keras
    from sklearn.datasets import load_digits

    import deadwood_tf as dw

    d = load_digits()
    x = (d.images / 16.0).astype("float32")[..., None][: args.examples]
    y = d.target.astype("int64")[: args.examples]
    keras.utils.set_random_seed(0)
    scope = strategy.scope() if strategy is not None else __import__("contextlib").nullcontext()
    with scope:
        teacher = keras.Sequential([
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10)])
        model = dw.DeadwoodModel(dw.prune_model(teacher), teacher,
                                 attack=dw.PGD(0.1, steps=5, step_size=0.03, random_start=False),
                                 num_examples=len(x))
        model.compile(keras.optimizers.Adam(1e-3))
    ds = tf.data.Dataset.from_tensor_slices((x, y, np.arange(len(x), dtype="int64")))
    ds = ds.shuffle(len(x), seed=0).batch(args.batch)
    if args.mode == "multi_worker":
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        ds = ds.with_options(options)

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t0)

    times = []
    model.fit(ds, epochs=args.epochs, verbose=0,
              callbacks=[dw.DeadwoodCallback(0.9, prune_epoch=1, verbose=0), Timer()])
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    steps = -(-len(x) // args.batch)
    result = {
        "mode": args.mode, "replicas": replicas, "examples": len(x), "batch": args.batch,
        "epoch_s": times, "examples_per_s": len(x) * (len(times) - 1) / sum(times[1:]),
        "steps_per_epoch": steps, "trainable_params": trainable,
        # What each step hands to collectives (float32 gradients; Deadwood's
        # all_gather of int64 index + 2 float32 violations per example of the
        # global batch). Computed from the shapes and dtypes of those tensors.
        "gradient_allreduce_bytes": 4 * trainable if replicas > 1 else 0,
        "deadwood_allgather_bytes": (8 + 2 * 4) * args.batch if replicas > 1 else 0,
        "dense_delta_allreduce_bytes": 3 * 4 * len(x) if replicas > 1 else 0,
    }
    with open(args.out, "w") as f:
        json.dump(result, f)


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default=None,
                        choices=(None, "one_device", "mirrored", "multi_worker"))
    parser.add_argument("--out", default=None)
    parser.add_argument("--examples", type=int, default=1400)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--timeout", type=int, default=600)
    args = parser.parse_args()
    if args.mode is not None:
        return _run(args)

    tmp = tempfile.mkdtemp(prefix="dw_bench_dist_")
    common = [f"--examples={args.examples}", f"--batch={args.batch}", f"--epochs={args.epochs}"]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root)  # this checkout's deadwood_tf
    env.pop("TF_CONFIG", None)
    results = []
    for mode in ("one_device", "mirrored"):
        out = os.path.join(tmp, f"{mode}.json")
        subprocess.run([sys.executable, __file__, f"--mode={mode}", f"--out={out}", *common],
                       env=env, check=True, timeout=args.timeout)
        results.append(json.load(open(out)))
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    try:
        for i in range(2):
            tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
            procs.append(subprocess.Popen(
                [sys.executable, __file__, "--mode=multi_worker",
                 f"--out={os.path.join(tmp, f'worker{i}.json')}", *common],
                env=dict(env, TF_CONFIG=tf_config)))
        for p in procs:
            if p.wait(timeout=args.timeout) != 0:
                raise SystemExit("a worker failed")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    results.append(json.load(open(os.path.join(tmp, "worker0.json"))))
    base = results[0]["examples_per_s"]
    print("| setup | replicas | examples/s | vs one device | gradient all-reduce B/step "
          "| Deadwood all-gather B/step | dense-delta alternative B/step |")
    print("|---|---|---|---|---|---|---|")
    names = {"one_device": "one device (no strategy, XLA on)",
             "mirrored": "MirroredStrategy, 2 logical CPUs",
             "multi_worker": "MultiWorkerMirroredStrategy, 2 processes"}
    for r in results:
        print(f"| {names[r['mode']]} | {r['replicas']} | {r['examples_per_s']:.0f} | "
              f"{r['examples_per_s'] / base:.2f}x | {r['gradient_allreduce_bytes']:,} | "
              f"{r['deadwood_allgather_bytes']:,} | {r['dense_delta_allreduce_bytes']:,} |")
    print(json.dumps(results))


if __name__ == "__main__":
    main()

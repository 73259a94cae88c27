"""LiteRT latency of several .tflite files, measured interleaved.

  python tools/time_tflite.py --dir=runs/channels/tflite --threads=1,2 --out=latency.json

On a shared machine, timings drift with the load of other jobs. Every file is
therefore timed in turn, round after round (`--rounds` rounds of `--invokes`
single-example invokes each, after a warm-up), so that all files see the same
load, and the median over rounds of the mean invoke time is reported. Ratios
between files measured this way are far steadier than absolute times.

Needs only numpy and ai_edge_litert (not TensorFlow), so that it also runs on
a machine where only LiteRT is installed. Default interpreter (XNNPack on).
"""

import argparse
import glob
import json
import os
import platform
import statistics
import time

import numpy as np


def _interpreter(path, threads, builtin=False):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kwargs = {"experimental_op_resolver_type":
              OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES} if builtin else {}
    it = Interpreter(model_path=path, num_threads=threads, **kwargs)
    inp = it.get_input_details()[0]
    it.resize_tensor_input(inp["index"], [1, *inp["shape"][1:]])
    it.allocate_tensors()
    x = np.random.default_rng(0).uniform(0, 1, [1, *inp["shape"][1:]]).astype(inp["dtype"])
    it.set_tensor(inp["index"], x)
    return it


def time_files(paths, threads=(1, 2), rounds=30, invokes=20, warmup=20, builtin=False) -> dict:
    """`{threads: {basename: median microseconds per invoke}}`, interleaved.
    `builtin`: LiteRT's built-in kernels only (XNNPack off), for diagnosis."""
    out = {}
    for t in threads:
        its = {os.path.basename(p): _interpreter(p, t, builtin) for p in paths}
        for it in its.values():
            for _ in range(warmup):
                it.invoke()
        samples = {k: [] for k in its}
        for r in range(rounds):
            names = list(its) if r % 2 == 0 else list(its)[::-1]
            for k in names:
                it = its[k]
                start = time.perf_counter()
                for _ in range(invokes):
                    it.invoke()
                samples[k].append((time.perf_counter() - start) / invokes * 1e6)
        out[str(t)] = {k: statistics.median(v) for k, v in samples.items()}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, help="folder of .tflite files")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--invokes", type=int, default=20)
    parser.add_argument("--out", default="")
    parser.add_argument("--builtin", action="store_true", help="XNNPack off (diagnosis)")
    args = parser.parse_args()
    paths = sorted(glob.glob(os.path.join(args.dir, "*.tflite")))
    result = {"machine": f"{platform.machine()} {platform.processor()} "
                         f"{os.cpu_count()} CPUs, {platform.platform()}",
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "rounds": args.rounds, "invokes": args.invokes,
              "latency_us": time_files(paths, [int(t) for t in args.threads.split(",")],
                                       args.rounds, args.invokes, builtin=args.builtin)}
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()

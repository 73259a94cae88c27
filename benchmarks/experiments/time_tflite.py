"""LiteRT latency of several .tflite files, measured interleaved.

  python benchmarks/experiments/time_tflite.py --dir=runs/channels/tflite --threads=1,2 --out=latency.json

On a shared machine, timings drift with the load of other jobs. Every file is
therefore timed in turn, round after round (`--rounds` rounds of `--invokes`
single-example invokes each, after a warm-up), so that all files see the same
load, and the median over rounds of the mean invoke time is reported. Ratios
between files measured this way are far steadier than absolute times. The
timing is `deadwood_tf.litert.time_files`, the pipeline's too.

Needs only numpy and ai_edge_litert (not TensorFlow), so that it also runs on
a machine where only LiteRT is installed. Default interpreter (XNNPack on).
"""

import argparse
import glob
import importlib.util
import json
import os
import platform
import time


def _litert():
    """deadwood_tf/litert.py, loaded by path: importing the package would import
    TensorFlow, which a machine set up for timing only may lack."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(root,
                        "deadwood_tf", "litert.py")
    spec = importlib.util.spec_from_file_location("deadwood_tf_litert", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
              "latency_us": _litert().time_files(paths, [int(t) for t in args.threads.split(",")],
                                                args.rounds, args.invokes,
                                                builtin_kernels=args.builtin)}
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()

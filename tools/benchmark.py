"""python tools/benchmark.py --config=configs/benchmark_quick.py --workdir=runs/benchmark_quick"""

from absl import app

from deadwood_tf.cli import benchmark

if __name__ == "__main__":
    app.run(benchmark.main)

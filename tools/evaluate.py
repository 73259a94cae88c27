"""python tools/evaluate.py --help"""

from absl import app

from deadwood_tf.cli import evaluate

if __name__ == "__main__":
    app.run(evaluate.main)

"""Runs the Deadwood pipeline: python tools/train.py --config=configs/digits_cnn.py --workdir=runs/digits"""

from absl import app

from deadwood_tf.cli import train

if __name__ == "__main__":
    app.run(train.main)

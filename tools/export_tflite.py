"""python tools/export_tflite.py --help"""

from absl import app

from deadwood_tf.cli import export_tflite

if __name__ == "__main__":
    app.run(export_tflite.main)

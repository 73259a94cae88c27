"""The default settings: the benchmark's reference protocol on scikit-learn's digits."""

from deadwood_tf.config import default_config


def get_config():
    return default_config()

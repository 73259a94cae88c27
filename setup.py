"""deadwood_tf: robust one-shot global pruning (Deadwooding) for Keras 3."""

from setuptools import find_packages, setup

setup(
    name="deadwood_tf",
    version="0.1.0",
    description="Deadwooding for Keras 3: global pruning that keeps accuracy and "
                "adversarial robustness, with verified sparse TFLite export.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["deadwood_tf", "deadwood_tf.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.0,<4",
        "tensorflow-model-optimization>=0.8",
        # tfmot's pruning schedules import tf_keras once Keras 3 is the default.
        "tf_keras>=2.21,<2.22",
        "cleverhans==4.0.0",
        "absl-py",
        "ml-collections",
        "ai-edge-litert",
        "numpy",
        # TensorFlow 2.21 no longer pulls these in; the training binary writes
        # TensorBoard logs and PNG plots.
        "tensorboard",
        "matplotlib",
    ],
    entry_points={
        "console_scripts": [
            "deadwood-train = deadwood_tf.cli.train:run",
            "deadwood-evaluate = deadwood_tf.cli.evaluate:run",
            "deadwood-export-tflite = deadwood_tf.cli.export_tflite:run",
            "deadwood-benchmark = deadwood_tf.cli.benchmark:run",
        ],
    },
    extras_require={
        # ART's gradient-free SquareAttack and AutoAttack for evaluation.
        "robustness": ["adversarial-robustness-toolbox==1.20.1", "multiprocess"],
        # The benchmark (deadwood_tf.benchmarks): stratified validation split
        # (scikit-learn), t-intervals over seeds (scipy), worst-case attacks (ART).
        "benchmark": ["scikit-learn", "scipy", "adversarial-robustness-toolbox==1.20.1",
                      "multiprocess"],
        # The benchmark's PQuantML rows (baselines.pquant). Its own requirements
        # (hgq2, optuna, pydantic, pyyaml, quantizers, keras>=3) leave TensorFlow
        # 2.21 alone; only its `tensorflow` extra (not asked for) pins <=2.20.
        "peers": ["pquant-ml==0.1.0"],
        # keras-hub: the model coverage checks (tests/test_coverage.py,
        # tools/check_coverage.py) prune KerasHub backbones; keras-hub imports
        # tensorflow-text on the TensorFlow backend. pquant-ml: tests/test_peers.py.
        # jax, jaxlib (CPU wheels, no CUDA): tests/test_backends.py, the masks on JAX.
        # pdoc: tests/test_api_docs.py, the API reference from the docstrings.
        "test": ["pytest", "scipy", "scikit-learn", "adversarial-robustness-toolbox==1.20.1",
                 "multiprocess", "keras-hub>=0.32,<0.33", "tensorflow-text>=2.21,<2.22",
                 "pquant-ml==0.1.0", "jax>=0.10.2,<0.11", "jaxlib>=0.10.2,<0.11",
                 "pdoc>=16,<17"],
    },
)

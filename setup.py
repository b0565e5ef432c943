"""dcae_tf: DCAE (dictionary-based entropy model) learned image codec on TensorFlow."""
import setuptools

# The stack is pinned: TFC's Python library only works with TF 2.14, and newer
# tensorflow-datasets / imagecodecs pull protobuf>=5 / numpy>=2 which break it.
INSTALL_REQUIRES = [
    "tensorflow==2.14.1",
    "tensorflow-compression==2.14.1",
    "tensorflow-probability==0.22.1",
    "tensorflow-datasets==4.9.3",
    # 1.15.0, not 1.14.0: on Python 3.11 it allows protobuf 4.25, whose C
    # (upb) runtime parses and builds TF's graph protos several times faster
    # than the pure-Python one 1.14.0's protobuf<4.21 falls back to (3.20.x
    # has no Python 3.11 wheel): loading the paper preset's export 78 s -> 13 s.
    "tensorflow-metadata==1.15.0",
    "protobuf>=4.25.2,<5",
    "tensorflow-serving-api==2.14.1",
    "numpy>=1.23,<2",
    "pillow>=10,<12",
    "absl-py>=1.0",
    "tqdm>=4.60",
    "matplotlib>=3.7,<3.12",
    "bjontegaard==1.3.0",
    "imagecodecs>=2024.1.1,<2025",
]

setuptools.setup(
    name="dcae_tf",
    version="0.1.0",
    description="DCAE learned image compression (CVPR 2025) on TensorFlow / "
                "tensorflow-compression",
    packages=setuptools.find_packages(include=["dcae_tf", "dcae_tf.*"]),
    python_requires=">=3.11,<3.12",
    install_requires=INSTALL_REQUIRES,
    extras_require={
        # torch: the tests write and read real official-format .pth files.
        "test": ["pytest>=7.4,<9", "pytest-timeout>=2.2", "pytest-xdist==3.6.1",
                 "torch==2.13.0"],
        # Only needed to read official .pth checkpoints.
        "torch": ["torch==2.13.0"],
    },
    entry_points={
        "console_scripts": [
            "dcae-tf=dcae_tf.cli:run_main",
            "dcae-tf-server=dcae_tf.serving.server:run_main",
        ],
    },
)

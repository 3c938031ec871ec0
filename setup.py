"""Package list for setuptools (all metadata lives in pyproject.toml).

``regnet_zoo*`` packages are found automatically; the top-level ``weights_manifest/`` data folder
is installed as ``regnet_zoo.weights_manifest`` so the weights manifest ships with wheels and
resolves in editable installs (``importlib.resources.files("regnet_zoo.weights_manifest")``).
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["regnet_zoo", "regnet_zoo.*"]) + ["regnet_zoo.weights_manifest"],
    package_dir={"regnet_zoo.weights_manifest": "weights_manifest"},
    package_data={"regnet_zoo.weights_manifest": ["*.json"]},
)

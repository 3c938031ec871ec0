"""Data package: the weights manifest (``manifest.json``) and its JSON Schema (``schema.json``).

Installed as ``regnet_zoo.weights_manifest`` (see ``setup.py``); read it with
``regnet_zoo.weights.manifest.load_manifest()``.
"""

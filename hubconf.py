"""torch.hub entrypoints: one per registry model, e.g.

    model = torch.hub.load("<owner>/regnet-zoo", "regnety_4.0gf", pretrained=True)
    torch.hub.list("<owner>/regnet-zoo")  # every model name; torch.hub.help(repo, name) describes one

Each entrypoint is ``regnet_zoo.create(name, pretrained=..., **kwargs)``: ``pretrained`` is True (the
default tag), a tag (``"ra3_in1k"``), ``"pycls"`` / ``"torchvision"`` or a path; the keyword arguments
are ``create``'s (``num_classes``, ``in_chans``, ``features_only``, ``cache_dir``, ...).
"""

import regnet_zoo
import regnet_zoo.weights.manifest

dependencies = ["torch", "numpy", "timm", "huggingface_hub", "safetensors", "jsonschema"]


def _entrypoint(name):
    entry = regnet_zoo.get_entry(name)

    def entrypoint(pretrained=False, **kwargs):
        return regnet_zoo.create(name, pretrained=pretrained, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = name
    tags = ", ".join(row["tag"] + (" (default)" if row["default"] else "") for row in
                     regnet_zoo.weights.manifest.pretrained_table([name]))
    entrypoint.__doc__ = (f"{entry.description}: regnet_zoo.create({name!r}, pretrained=False, **kwargs). "
                          f"pretrained: True (the default tag), a tag ({tags or 'none published'}), 'pycls', "
                          "'torchvision' or a path to a weight file.")
    return entrypoint


def __getattr__(name):
    if name in regnet_zoo.list_models():
        return _entrypoint(name)
    raise AttributeError(f"hubconf has no entrypoint {name!r}; see torch.hub.list or regnet_zoo.list_models()")


def __dir__():
    return sorted([*globals(), *regnet_zoo.list_models()])

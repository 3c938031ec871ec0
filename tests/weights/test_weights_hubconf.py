"""hubconf.py: torch.hub.load / list / help for every registry model, pretrained weights from the Hub."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import regnet_zoo

REPO = Path(__file__).resolve().parents[2]
X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def as_github_repo(monkeypatch):
    """torch.hub.list / help on a GitHub name read this checkout (what torch.hub would have downloaded)."""
    monkeypatch.setattr(torch.hub, "_get_cache_or_reload", lambda *args, **kwargs: str(REPO))
    return "owner/regnet-zoo"


def test_hubconf_imports_only_regnet_zoo_from_the_repo():
    tree = ast.parse((REPO / "hubconf.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {"regnet_zoo"}


def test_every_registry_name_is_an_entrypoint(as_github_repo):
    assert torch.hub.list(as_github_repo) == sorted(regnet_zoo.list_models())
    doc = torch.hub.help(as_github_repo, "regnety_4.0gf")
    assert "regnet_zoo.create('regnety_4.0gf'" in doc and "pycls_in1k (default)" in doc and "ra3_in1k" in doc
    with pytest.raises(RuntimeError, match="Cannot find callable"):
        torch.hub.load(str(REPO), "RegNetY-4.0GF", source="local")  # torch.hub takes the names it lists


def test_load_builds_the_model_with_create_arguments():
    model = torch.hub.load(str(REPO), "regnety_4.0gf", source="local", num_classes=7)
    ref = regnet_zoo.create("regnety_4.0gf", num_classes=7)
    assert model.pretrained_cfg["architecture"] == "regnety_4.0gf" and model.num_classes == 7
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    feats = torch.hub.load(str(REPO), "regnetx_200mf", source="local", features_only=True, out_indices=(2, 4))
    assert feats.feature_info.channels() == [56, 368]


def test_load_pretrained_from_the_hub(hub, pycls_weights):
    ref, repo_id = pycls_weights
    model = torch.hub.load(str(REPO), "regnetx_200mf", source="local", pretrained=True).eval()
    torch.testing.assert_close(model(X), ref(X), rtol=0, atol=0)
    assert (model.pretrained_cfg["tag"], model.pretrained_cfg["hf_hub_id"]) == ("pycls_in1k", repo_id)

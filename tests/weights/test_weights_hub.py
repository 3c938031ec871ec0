"""create(name, pretrained=...) end to end against the local Hub: fetch, cache, offline, verify, errors."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants

import regnet_zoo
from regnet_zoo.weights import (
    WeightsMismatchError,
    WeightsNotCachedError,
    WeightsNotFoundError,
    WeightsVerificationError,
)

X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def blobs(cache: str) -> list[Path]:
    return [p for p in Path(cache).rglob("blobs/*") if p.is_file()]


def resolve_calls(hub, repo_id: str, filename: str) -> list[str]:
    return [m for m, p, _ in hub.requests if p.startswith(f"/{repo_id}/resolve/") and p.endswith(filename)]


def test_default_tag_loads_the_hub_weights_with_manifest_preprocessing(hub, pycls_weights):
    ref, repo_id = pycls_weights
    model = regnet_zoo.create("regnetx_200mf", pretrained=True).eval()
    torch.testing.assert_close(model(X), ref(X), rtol=0, atol=0)
    cfg = model.pretrained_cfg
    # the manifest's preprocessing (the paper's evaluation), not the defaults of the repo's config.json
    assert (cfg["tag"], cfg["hf_hub_id"], cfg["interpolation"], cfg["crop_pct"]) == (
        "pycls_in1k", repo_id, "bilinear", 0.875)
    assert cfg["input_size"] == (3, 224, 224) and cfg["license"] == "mit"
    assert resolve_calls(hub, repo_id, "model.safetensors") == ["HEAD"]  # then the CDN GET
    oid = hashlib.sha256(hub.files(repo_id)["model.safetensors"]).hexdigest()
    assert [(m, p) for m, p, _ in hub.cdn_requests] == [("GET", f"/lfs/{oid}")]  # LFS bytes from the "CDN"


def test_tag_spellings_and_features_only(hub, pycls_weights):
    ref, _ = pycls_weights
    a = regnet_zoo.create("RegNetX-200MF.pycls_in1k", pretrained=True).eval()
    b = regnet_zoo.create("regnetx_002", pretrained="pycls_in1k").eval()
    torch.testing.assert_close(a(X), ref(X), rtol=0, atol=0)
    torch.testing.assert_close(b(X), ref(X), rtol=0, atol=0)
    feats = regnet_zoo.create("regnetx_200mf", pretrained=True, features_only=True, out_indices=(2, 4)).eval()
    want = ref.forward_intermediates(X, indices=[2, 4], intermediates_only=True)
    for f, w in zip(feats(X), want):
        torch.testing.assert_close(f, w, rtol=0, atol=0)


def test_cache_is_reused_and_offline_mode_needs_no_network(hub, pycls_weights, monkeypatch):
    ref, repo_id = pycls_weights
    regnet_zoo.create("regnetx_200mf", pretrained=True)
    assert len(blobs(constants.HF_HUB_CACHE)) == 1
    hub.requests.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = regnet_zoo.create("regnetx_200mf", pretrained=True).eval()
    assert hub.requests == []  # nothing asked of the Hub
    torch.testing.assert_close(model(X), ref(X), rtol=0, atol=0)


def test_offline_without_cache_says_how_to_get_the_weights(hub, pycls_weights, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotCachedError) as err:
        regnet_zoo.create("regnetx_200mf", pretrained=True)
    msg = str(err.value)
    assert "HF_HUB_OFFLINE=1" in msg and "regnet-zoo download" in msg and "pretrained='path/to/" in msg
    assert hub.requests == []


@pytest.mark.parametrize("server", ["refused_server", "silent_server"])
def test_unreachable_hub_fails_fast_with_the_download_hint(hub, pycls_weights, monkeypatch, no_retry_waits,
                                                           request, server):
    monkeypatch.setenv("HF_ENDPOINT", request.getfixturevalue(server))
    start = time.perf_counter()
    with pytest.raises(WeightsNotCachedError) as err:
        regnet_zoo.create("regnetx_200mf", pretrained=True)
    assert time.perf_counter() - start < 5  # huggingface_hub alone: ~23 s of retries (refused), minutes (silent)
    assert no_retry_waits == []
    if server == "silent_server":
        assert request.getfixturevalue(server).connections() == 1  # the one probe, nothing after it
    assert "`regnet-zoo download regnetx_200mf.pycls_in1k`" in str(err.value)


def test_unreachable_hub_serves_the_cache_at_once(hub, pycls_weights, monkeypatch, no_retry_waits, silent_server):
    ref, _ = pycls_weights
    regnet_zoo.create("regnetx_200mf", pretrained=True)
    monkeypatch.setenv("HF_ENDPOINT", silent_server)
    start = time.perf_counter()
    model = regnet_zoo.create("regnetx_200mf", pretrained=True).eval()
    assert time.perf_counter() - start < 5 and no_retry_waits == []  # not huggingface_hub's 10 s HEAD timeout
    assert silent_server.connections() == 1
    torch.testing.assert_close(model(X), ref(X), rtol=0, atol=0)


def test_a_hub_that_answered_is_not_probed_again(hub, pycls_weights, refused_server):
    from regnet_zoo.weights.endpoint import unreachable

    assert unreachable(hub.url + "/any/path") is None
    probes = hub.probes
    regnet_zoo.create("regnetx_200mf", pretrained=True)
    regnet_zoo.create("regnetx_200mf", pretrained="pycls_in1k")
    assert hub.probes == probes
    assert unreachable(refused_server)  # why not, e.g. 'ConnectError: [Errno 111] Connection refused'


def test_corrupt_download_is_removed_and_reported(hub, pycls_weights):
    ref, repo_id = pycls_weights
    oid = hashlib.sha256(hub.files(repo_id)["model.safetensors"]).hexdigest()
    hub.corrupt.add(oid)
    with pytest.raises(WeightsVerificationError) as err:
        regnet_zoo.create("regnetx_200mf", pretrained=True)
    msg = str(err.value)
    assert f"expected {oid} (the Hub's hash of the file)" in msg and "got " in msg and "Removed" in msg
    got = msg.split("got ")[1][:64]
    assert got != oid and len(got) == 64
    assert blobs(constants.HF_HUB_CACHE) == []  # nothing half-trusted left in the cache
    hub.corrupt.clear()
    model = regnet_zoo.create("regnetx_200mf", pretrained=True).eval()  # a clean retry downloads again
    torch.testing.assert_close(model(X), ref(X), rtol=0, atol=0)


def test_file_corrupted_in_the_cache_is_caught_on_load(hub, pycls_weights):
    regnet_zoo.create("regnetx_200mf", pretrained=True)
    (blob,) = blobs(constants.HF_HUB_CACHE)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(WeightsVerificationError, match="sha256 mismatch"):
        regnet_zoo.create("regnetx_200mf", pretrained=True)
    assert not blob.exists()


def test_pinned_sha256_in_the_manifest_is_checked(hub, pycls_weights, tmp_path, monkeypatch):
    from regnet_zoo.weights.manifest import manifest_path

    _, repo_id = pycls_weights
    data = json.loads(manifest_path().read_text())
    real = hashlib.sha256(hub.files(repo_id)["model.safetensors"]).hexdigest()
    for pinned, ok in ((real, True), ("0" * 64, False)):
        for w in data["weights"]:
            if w.get("hub", {}).get("repo_id") == repo_id:
                w["hub"]["sha256"] = pinned
        path = tmp_path / f"manifest_{ok}.json"
        path.write_text(json.dumps(data))
        monkeypatch.setenv("REGNET_ZOO_MANIFEST", str(path))
        if ok:
            regnet_zoo.create("regnetx_200mf", pretrained=True)
        else:
            with pytest.raises(WeightsVerificationError, match=f"expected {'0' * 64} \\(pinned in the weights"):
                regnet_zoo.create("regnetx_200mf", pretrained=True)
            assert blobs(constants.HF_HUB_CACHE) == []


def test_unknown_tag_lists_the_tags_that_exist(hub):
    with pytest.raises(WeightsNotFoundError) as err:
        regnet_zoo.create("regnety_16gf", pretrained="in22k_nonexistent")
    msg = str(err.value)
    assert "no such weights: regnety_16gf.in22k_nonexistent" in msg
    assert "pycls_in1k (default)" in msg and "swag_ft_in1k" in msg and "tv2_in1k" in msg
    assert hub.requests == []  # decided from the manifest


def test_404_from_the_hub_says_no_such_weights_and_lists_tags(hub):
    # the manifest knows regnetx_800mf.tv2_in1k but this Hub does not have the repo
    with pytest.raises(WeightsNotFoundError) as err:
        regnet_zoo.create("regnetx_800mf", pretrained="tv2_in1k")
    msg = str(err.value)
    assert "no such weights" in msg and "timm/regnetx_008.tv2_in1k" in msg and "pycls_in1k (default)" in msg
    head = [h for m, p, h in hub.requests if p == "/timm/regnetx_008.tv2_in1k/resolve/main/model.safetensors"]
    assert head and head[0]["user-agent"].startswith("regnet_zoo")


def test_hf_hub_missing_file_and_revision(hub, pycls_weights):
    _, repo_id = pycls_weights
    with pytest.raises(WeightsNotFoundError, match="revision 'v9' of"):
        regnet_zoo.create(f"hf-hub:{repo_id}@v9", pretrained=True)
    hub.commit("someone/only-a-readme", {"README.md": b"hi"})
    with pytest.raises(WeightsNotFoundError, match="file 'config.json' not in 'someone/only-a-readme'"):
        regnet_zoo.create("hf-hub:someone/only-a-readme")


def test_timm_repo_through_hf_hub_prefix(hub, pycls_weights):
    ref, repo_id = pycls_weights
    model = regnet_zoo.create(f"hf-hub:{repo_id}", pretrained=True).eval()
    torch.testing.assert_close(model(X), ref(X), rtol=0, atol=0)
    assert model.pretrained_cfg["architecture"] == "regnetx_200mf"
    assert model.pretrained_cfg["hf_hub_id"] == repo_id
    # a Hub repo names weights: they load by default; pretrained=False builds the architecture alone
    torch.testing.assert_close(regnet_zoo.create(f"hf-hub:{repo_id}").eval()(X), ref(X), rtol=0, atol=0)
    fresh = regnet_zoo.create(f"hf-hub:{repo_id}", pretrained=False).eval()
    assert not torch.equal(fresh(X), ref(X))


def test_private_repo_needs_the_token_from_the_environment(hub, pycls_weights, monkeypatch):
    ref, repo_id = pycls_weights
    data = hub.files(repo_id)
    hub.commit("me/private-regnet", {"model.safetensors": data["model.safetensors"],
                                     "config.json": data["config.json"]})
    hub.repos["me/private-regnet"].token = "hf_secret"
    with pytest.raises(WeightsNotFoundError, match="private repos need a token"):
        regnet_zoo.create("hf-hub:me/private-regnet", pretrained=True)
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    hub.requests.clear()
    model = regnet_zoo.create("hf-hub:me/private-regnet", pretrained=True).eval()
    torch.testing.assert_close(model(X), ref(X), rtol=0, atol=0)
    auth = {h.get("authorization") for m, p, h in hub.requests if p.startswith("/me/private-regnet/resolve/")}
    assert auth == {"Bearer hf_secret"}


def test_other_class_count_and_channels_adapt_with_a_log_line(hub, pycls_weights, caplog):
    ref, _ = pycls_weights
    with caplog.at_level(logging.INFO, logger="regnet_zoo.weights.apply"):
        model = regnet_zoo.create("regnetx_200mf", pretrained=True, num_classes=10, in_chans=1).eval()
    assert model.num_classes == 10 and model.pretrained_cfg["num_classes"] == 10
    text = caplog.text
    assert "from 3 to 1 input channels" in text and "keeping the model's freshly initialised head" in text
    # the trunk is the pretrained one: 1 channel = sum of the RGB filters (timm's adapt_input_conv)
    x1 = X[:, :1]
    torch.testing.assert_close(model.forward_features(x1), ref.forward_features(x1.expand(-1, 3, -1, -1)),
                               rtol=1e-4, atol=1e-4)


def test_weights_of_another_architecture_are_a_mismatch(hub, pycls_weights, tmp_path, to_safetensors):
    ref, _ = pycls_weights
    path = tmp_path / "x200.safetensors"
    path.write_bytes(to_safetensors(ref.state_dict()))
    with pytest.raises(WeightsMismatchError) as err:
        regnet_zoo.create("regnety_200mf", pretrained=str(path))
    msg = str(err.value)
    assert "missing keys: s1.b1.se.fc1.weight" in msg and os.fspath(path) in msg


def test_cache_dir_argument(hub, pycls_weights, tmp_path):
    regnet_zoo.create("regnetx_200mf", pretrained=True, cache_dir=tmp_path / "mine")
    assert len(blobs(str(tmp_path / "mine"))) == 1
    assert blobs(constants.HF_HUB_CACHE) == []


def test_hub_hash_from_a_head_request_when_the_cache_holds_copies(hub, pycls_weights, tmp_path):
    """Without symlinks (e.g. Windows) the cache keeps copies: the expected hash then comes from a HEAD."""
    from regnet_zoo.weights.files import git_blob_sha1
    from regnet_zoo.weights.hub import _hub_hash

    _, repo_id = pycls_weights
    for filename, digest in (("model.safetensors", hashlib.sha256), ("config.json", None)):
        data = hub.files(repo_id)[filename]
        copy = tmp_path / filename
        copy.write_bytes(data)
        expected = digest(data).hexdigest() if digest else git_blob_sha1(copy)  # LFS sha256 / git blob id
        hub.requests.clear()
        assert _hub_hash(str(copy), repo_id, filename, None, None) == expected
        assert [m for m, _, _ in hub.requests] == ["HEAD"]


@pytest.mark.parametrize("status, words", [(403, "log in with a token"), (429, "too many requests"),
                                           (503, "server error")])
def test_hub_refusals_are_weights_errors_with_status_and_repo(hub, pycls_weights, status, words, monkeypatch):
    import huggingface_hub.utils._http as hf_http

    from regnet_zoo.weights import WeightsHubError

    _, repo_id = pycls_weights
    monkeypatch.setattr(hf_http.time, "sleep", lambda s: None)  # huggingface_hub backs off on 429/5xx
    hub.fail[f"/{repo_id}/resolve/"] = status
    with pytest.raises(WeightsHubError) as err:
        regnet_zoo.create("regnetx_200mf", pretrained=True)
    assert err.value.status == status
    msg = str(err.value)
    assert f"answered HTTP {status} for '{repo_id}'" in msg and words in msg and "regnetx_200mf.pycls_in1k" in msg
    assert "could not be reached" not in msg  # it was reached: it refused


def test_offline_hint_for_a_repo_config_is_not_a_weights_path(hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotCachedError) as err:
        regnet_zoo.create("hf-hub:foo/bar")
    msg = str(err.value)
    assert "config.json" in msg and "regnet-zoo download hf-hub:foo/bar" in msg
    assert "pretrained='path/to/config.json'" not in msg and "from_pretrained('path/to/folder')" in msg


def test_non_commercial_weights_log_a_warning(hub, pycls_weights, tmp_path, monkeypatch, caplog):
    """A tag under a non-commercial licence (SWAG: cc-by-nc-4.0), and a Hub repo whose config says so."""
    from regnet_zoo.weights.manifest import manifest_path

    ref, repo_id = pycls_weights
    doc = json.loads(manifest_path().read_text())
    nc = [w for w in doc["weights"] if w["model"] == "regnety_16gf" and w["tag"] == "swag_ft_in1k"][0]
    for w in doc["weights"]:
        if w["model"] == "regnetx_200mf":  # the small test weights under SWAG's terms
            doc["weights"].append({**w, "tag": "nc_test", "default": False, "license": nc["license"]})
            break
    (tmp_path / "m.json").write_text(json.dumps(doc))
    monkeypatch.setenv("REGNET_ZOO_MANIFEST", str(tmp_path / "m.json"))
    with caplog.at_level(logging.WARNING, logger="regnet_zoo.weights.manifest"):
        regnet_zoo.create("regnetx_200mf", pretrained=True)
        assert caplog.text == ""  # MIT: nothing to say
        model = regnet_zoo.create("regnetx_200mf", pretrained="nc_test")
    assert "permits non-commercial use only" in caplog.text and "cc-by-nc-4.0" in caplog.text
    assert model.pretrained_cfg["license"] == "cc-by-nc-4.0"
    caplog.clear()
    config = json.loads(hub.files(repo_id)["config.json"])
    config["pretrained_cfg"]["license"] = "cc-by-nc-4.0"
    hub.commit("someone/nc-regnet", {"config.json": json.dumps(config).encode(),
                                     "model.safetensors": hub.files(repo_id)["model.safetensors"]})
    with caplog.at_level(logging.WARNING, logger="regnet_zoo.weights.manifest"):
        regnet_zoo.create("hf-hub:someone/nc-regnet", pretrained=False)  # no weights, no warning
        assert caplog.text == ""
        regnet_zoo.create("hf-hub:someone/nc-regnet")
    assert "hf-hub:someone/nc-regnet: licence cc-by-nc-4.0 permits non-commercial use only" in caplog.text


def test_tv_weights_asked_of_the_papers_model_point_at_the_tv_model(hub):
    for pretrained in ("tv2_in1k", "torchvision"):
        with pytest.raises(WeightsNotFoundError) as err:
            regnet_zoo.create("regnetx_400mf", pretrained=pretrained)
        msg = str(err.value)
        assert "no such weights: regnetx_400mf.tv2_in1k" in msg and "pycls_in1k (default)" in msg
        assert "regnetx_400mf_tv has these weights" in msg and "widths differ" in msg
    with pytest.raises(WeightsNotFoundError, match="regnety_800mf has these weights"):
        regnet_zoo.create("regnety_800mf_tv", pretrained="pycls")
    assert hub.requests == []  # decided from the manifest


def test_a_tag_in_the_name_loads_weights_and_says_so(hub, pycls_weights, caplog):
    ref, _ = pycls_weights
    with caplog.at_level(logging.INFO, logger="regnet_zoo.factory"):
        model = regnet_zoo.create("regnetx_200mf.pycls_in1k").eval()
    assert "loading weights regnetx_200mf.pycls_in1k (tag in the name); pass pretrained=False" in caplog.text
    torch.testing.assert_close(model(X), ref(X), rtol=0, atol=0)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="regnet_zoo.factory"):
        fresh = regnet_zoo.create("regnetx_200mf.pycls_in1k", pretrained=False).eval()
    assert "tag in the name" not in caplog.text and not torch.equal(fresh(X), ref(X))


def test_timm_loads_our_tags_after_registration(hub, pycls_weights):
    import timm

    ref, repo_id = pycls_weights
    regnet_zoo.register_timm_models()
    for name in ("regnet_zoo_regnetx_002", "regnet_zoo_regnetx_002.pycls_in1k"):
        model = timm.create_model(name, pretrained=True).eval()
        torch.testing.assert_close(model(X), ref(X), rtol=0, atol=0)
        assert (model.pretrained_cfg["tag"], model.pretrained_cfg["hf_hub_id"]) == ("pycls_in1k", repo_id)

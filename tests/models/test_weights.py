"""Weights fetched as torchvision fetches them, from a loopback server with the URL patched."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from torchvision.models import ResNet18_Weights, resnet18

from owp.cli import main
from owp.errors import OwpInputError
from owp.models.backbones import resnet_fpn_backbone
from owp.models.weights import cache_file, fetch_weights

WEIGHTS = ResNet18_Weights.IMAGENET1K_V1


def serve_weights(file_server, state: dict, monkeypatch, *, corrupt: bool = False) -> str:
    """Serve ``state`` as torchvision names its files (``<name>-<sha256 prefix>.pth``) and
    point ``ResNet18_Weights`` at it; returns the URL."""
    staging = file_server.root / "staging.pth"
    torch.save(state, staging)
    digest = hashlib.sha256(staging.read_bytes()).hexdigest()[:8]
    served = file_server.root / f"resnet18-{digest}.pth"
    data = staging.read_bytes()
    served.write_bytes(data[:-1] + bytes([data[-1] ^ 1]) if corrupt else data)
    url = file_server.url(served.name)
    monkeypatch.setattr(ResNet18_Weights, "url", property(lambda self: url))
    return url


@pytest.fixture
def hub(tmp_path: Path, monkeypatch) -> Path:
    """An empty torch hub folder, downloads allowed."""
    folder = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(folder))
    monkeypatch.delenv("OWP_OFFLINE")
    return folder


def test_downloaded_once_into_the_hub_cache_then_read_from_it(hub, file_server, monkeypatch):
    trunk = resnet18(weights=None)
    url = serve_weights(file_server, trunk.state_dict(), monkeypatch)
    backbone = resnet_fpn_backbone(18, weights_backbone="ResNet18_Weights.IMAGENET1K_V1")
    assert torch.equal(backbone.body.layer4[1].conv2.weight, trunk.layer4[1].conv2.weight)
    cached = hub / "checkpoints" / Path(url).name
    assert cache_file(WEIGHTS) == cached and cached.is_file()
    assert [r[:2] for r in file_server.requests] == [("GET", "/" + cached.name)]
    resnet_fpn_backbone(18, weights_backbone="IMAGENET1K_V1")  # the cache: no second request
    assert len(file_server.requests) == 1


def test_a_file_failing_the_hash_check_is_not_kept(hub, file_server, monkeypatch):
    url = serve_weights(file_server, {"w": torch.ones(3)}, monkeypatch, corrupt=True)
    with pytest.raises(OwpInputError) as error:
        fetch_weights(WEIGHTS, progress=False)
    message = str(error.value)
    assert "not the published file" in message and "invalid hash value" in message
    assert url in message and str(cache_file(WEIGHTS)) in message and "\n" not in message
    assert not list((hub / "checkpoints").iterdir())


def test_an_unreachable_server_is_one_line(hub, file_server, monkeypatch):
    url = file_server.url("resnet18-00000000.pth")  # 404
    monkeypatch.setattr(ResNet18_Weights, "url", property(lambda self: url))
    with pytest.raises(OwpInputError, match="cannot download weights") as error:
        fetch_weights(WEIGHTS, progress=False)
    assert url in str(error.value) and str(cache_file(WEIGHTS)) in str(error.value)


def test_offline_names_the_file_the_cache_and_the_url(hub, file_server, monkeypatch, capsys):
    url = serve_weights(file_server, resnet18(weights=None).state_dict(), monkeypatch)
    monkeypatch.setenv("OWP_OFFLINE", "1")
    with pytest.raises(OwpInputError, match="downloads are off") as error:
        fetch_weights(WEIGHTS)
    assert str(hub / "checkpoints" / Path(url).name) in str(error.value) and url in str(error.value)
    monkeypatch.delenv("OWP_OFFLINE")
    argv = ["eval", "torchvision:fcos_resnet50_fpn", "--data", str(file_server.root)]
    assert main(["--offline", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("owp: error: ") and err.count("\n") == 1
    assert "downloads are off" in err and "fcos_resnet50_fpn_coco" in err
    assert file_server.requests == []

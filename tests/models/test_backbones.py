"""ResNet + FPN backbone: pyramid shapes, frozen parts, torchvision names, local weights."""

from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18
from torchvision.models.detection import fcos_resnet50_fpn
from torchvision.ops.misc import FrozenBatchNorm2d

from owp.errors import OwpInputError
from owp.models.backbones import RESNET_DEPTHS, resnet_fpn_backbone


@pytest.fixture(autouse=True)
def _no_download(monkeypatch):
    """Any attempt to fetch weights from the network fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.mark.parametrize("depth", [18, 50])
def test_pyramid_levels_p3_to_p7(depth):
    torch.manual_seed(0)
    backbone = resnet_fpn_backbone(depth, out_channels=64)
    assert backbone.out_channels == 64
    with torch.no_grad():
        out = backbone(torch.rand(2, 3, 128, 160))
    # Strides 8, 16, 32, 64, 128; P6 and P7 are 3x3 stride-2 convs, so sizes round up.
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "0": (2, 64, 16, 20),
        "1": (2, 64, 8, 10),
        "2": (2, 64, 4, 5),
        "p6": (2, 64, 2, 3),
        "p7": (2, 64, 1, 2),
    }
    assert list(out) == ["0", "1", "2", "p6", "p7"]


def test_batch_norm_is_frozen_when_asked_and_trainable_from_scratch():
    backbone = resnet_fpn_backbone(18, norm="frozen")
    kinds = {type(m) for m in backbone.modules()}
    assert FrozenBatchNorm2d in kinds
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in backbone.modules())
    scratch = resnet_fpn_backbone(18)  # "auto" without weights: trainable BN, whole trunk
    assert any(isinstance(m, nn.BatchNorm2d) for m in scratch.modules())
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in scratch.modules())
    assert all(p.requires_grad for p in scratch.body.parameters())


def _trainable_stages(backbone) -> set[str]:
    """Top-level trunk modules that have a trainable parameter."""
    return {n.split(".")[0] for n, p in backbone.body.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(
    ("layers", "stages"),
    [
        (0, set()),
        (1, {"layer4"}),
        (3, {"layer2", "layer3", "layer4"}),
        (5, {"conv1", "layer1", "layer2", "layer3", "layer4"}),
    ],
)
def test_trainable_layers_count_from_layer4_down(layers, stages):
    backbone = resnet_fpn_backbone(18, trainable_layers=layers, norm="frozen")
    assert _trainable_stages(backbone) == stages
    # Within a stage all parameters share one setting, and the FPN always trains.
    for name, parameter in backbone.body.named_parameters():
        assert parameter.requires_grad == (name.split(".")[0] in stages)
    assert all(p.requires_grad for p in backbone.fpn.parameters())


@pytest.mark.parametrize("layers", [-1, 6])
def test_trainable_layers_out_of_range(layers):
    with pytest.raises(ValueError, match=r"trainable_layers must be in \[0, 5\]"):
        resnet_fpn_backbone(18, trainable_layers=layers)


def test_names_and_outputs_match_torchvision_fcos():
    torch.manual_seed(0)
    reference = fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91).backbone
    # Non-trivial batch-norm statistics, so that loading them is visible in the output.
    for module in reference.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.1, 0.1)
    reference.eval()
    # Without pretrained weights torchvision builds plain BatchNorm2d, as owp does by default:
    # identical keys. The frozen variant lacks only the ``num_batches_tracked`` counters.
    reference_state = reference.state_dict()
    assert set(resnet_fpn_backbone(50).state_dict()) == set(reference_state)
    ours = resnet_fpn_backbone(50, norm="frozen")
    shared = {k for k in reference_state if not k.endswith(".num_batches_tracked")}
    assert set(ours.state_dict()) == shared
    ours.load_state_dict(reference_state, strict=True)

    # Frozen and eval-mode batch norm compute the same affine map in a different order; in
    # float64 the rounding difference vanishes below the tolerance.
    image = torch.rand(1, 3, 128, 160, dtype=torch.float64)
    with torch.no_grad():
        expected, actual = reference.double()(image), ours.double()(image)
    assert list(actual) == list(expected)
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=1e-9, atol=1e-9)


def test_local_state_dict_file_round_trip(tmp_path):
    torch.manual_seed(1)
    trunk = resnet18(weights=None)
    file = tmp_path / "resnet18.pth"
    torch.save(trunk.state_dict(), file)
    for given in (file, str(file)):
        backbone = resnet_fpn_backbone(18, weights_backbone=given)
        torch.testing.assert_close(backbone.body.conv1.weight, trunk.conv1.weight, rtol=0, atol=0)
        torch.testing.assert_close(
            backbone.body.layer4[1].bn2.running_var, trunk.layer4[1].bn2.running_var
        )


@pytest.mark.parametrize("key", ["model", "state_dict"])
def test_local_checkpoint_with_wrapper_key(tmp_path, key):
    trunk = resnet18(weights=None)
    file = tmp_path / "checkpoint.pt"
    torch.save({key: trunk.state_dict(), "epoch": 3}, file)
    backbone = resnet_fpn_backbone(18, weights_backbone=file)
    assert torch.equal(backbone.body.layer3[0].conv1.weight, trunk.layer3[0].conv1.weight)


def test_local_file_of_the_wrong_depth(tmp_path):
    file = tmp_path / "resnet18.pth"
    torch.save(resnet18(weights=None).state_dict(), file)
    with pytest.raises(OwpInputError, match="not a ResNet-50 trunk state dict") as error:
        resnet_fpn_backbone(50, weights_backbone=file)
    assert str(error.value).startswith(str(file))


def test_local_file_missing_keys(tmp_path):
    state = resnet18(weights=None).state_dict()
    del state["layer1.0.conv1.weight"]
    file = tmp_path / "partial.pth"
    torch.save(state, file)
    with pytest.raises(OwpInputError, match=r"1 missing keys \(e.g. layer1.0.conv1.weight\)"):
        resnet_fpn_backbone(18, weights_backbone=file)


def test_corrupt_or_absent_local_file(tmp_path):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(OwpInputError, match="cannot read backbone weights") as error:
        resnet_fpn_backbone(18, weights_backbone=corrupt)
    assert str(corrupt) in str(error.value)
    with pytest.raises(OwpInputError, match="file not found"):
        resnet_fpn_backbone(18, weights_backbone=tmp_path / "absent.pth")
    not_tensors = tmp_path / "list.pth"
    torch.save([1, 2, 3], not_tensors)
    with pytest.raises(OwpInputError, match="not a state dict of tensors"):
        resnet_fpn_backbone(18, weights_backbone=not_tensors)


@pytest.mark.parametrize("name", ["IMAGENET1K_V1", "ResNet18_Weights.IMAGENET1K_V1", "DEFAULT"])
def test_weights_name_missing_from_the_cache(tmp_path, monkeypatch, name):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    expected = tmp_path / "checkpoints" / Path(ResNet18_Weights.IMAGENET1K_V1.url).name
    with pytest.raises(OwpInputError) as error:
        resnet_fpn_backbone(18, weights_backbone=name)
    message = str(error.value)
    assert expected.name == "resnet18-f37072fd.pth"
    assert str(expected) in message
    assert ResNet18_Weights.IMAGENET1K_V1.url in message
    assert "downloads are off" in message


def test_weights_name_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    trunk = resnet18(weights=None)
    cached = tmp_path / "checkpoints" / Path(ResNet18_Weights.IMAGENET1K_V1.url).name
    cached.parent.mkdir()
    torch.save(trunk.state_dict(), cached)
    backbone = resnet_fpn_backbone(18, weights_backbone="ResNet18_Weights.IMAGENET1K_V1")
    assert torch.equal(backbone.body.conv1.weight, trunk.conv1.weight)


@pytest.mark.parametrize("name", ["IMAGENET1K_V9", "ResNet50_Weights.IMAGENET1K_V1"])
def test_unknown_weights_name_lists_the_choices(name):
    with pytest.raises(OwpInputError, match="unknown weights") as error:
        resnet_fpn_backbone(18, weights_backbone=name)
    assert "ResNet18_Weights.IMAGENET1K_V1" in str(error.value)


@pytest.mark.parametrize("depth", [0, 152, 49])
def test_bad_depth_lists_the_choices(depth):
    with pytest.raises(OwpInputError, match="unsupported ResNet depth") as error:
        resnet_fpn_backbone(depth)
    assert ", ".join(map(str, RESNET_DEPTHS)) in str(error.value)


def test_bad_out_channels():
    with pytest.raises(OwpInputError, match="out_channels must be positive"):
        resnet_fpn_backbone(18, out_channels=0)


@pytest.mark.parametrize("with_counter", [False, True])
def test_pretrained_weights_load_into_trainable_batch_norm(tmp_path, with_counter):
    """``backbone_norm="batch"`` with a weights file: torchvision's files have no
    ``num_batches_tracked``; a file that has it loads too (the counter is not taken)."""
    torch.manual_seed(0)
    trunk = resnet18()
    with torch.no_grad():
        trunk.bn1.running_mean.uniform_()
    state = trunk.state_dict()
    if not with_counter:
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    file = tmp_path / "resnet18.pth"
    torch.save(state, file)
    backbone = resnet_fpn_backbone(18, weights_backbone=file, norm="batch", trainable_layers=5)
    body = backbone.body
    assert type(body.bn1) is torch.nn.BatchNorm2d
    assert torch.equal(body.bn1.running_mean, trunk.bn1.running_mean)
    assert torch.equal(body.layer4[1].conv2.weight, trunk.layer4[1].conv2.weight)
    assert int(body.bn1.num_batches_tracked) == 0

"""Two-stage models under bf16 autocast keep anchors, box decoding, proposals and RoI boxes in
fp32 (issue 20): given the same raw head outputs, the boxes equal the fp32 path's.

The heads' outputs are replaced (forward hooks) by fixed values that bf16 holds exactly, as
bf16 tensors under autocast and fp32 tensors without: the only difference left between the two
runs is the precision of everything after the heads."""

import pytest
import torch

import owp

SIZE = 320  # coordinates above 256 px: bf16 rounds them to a 2 px grid (4 px above 512)


def _fixed(output, seed, *, positive=False):
    """Same-shape replacement of a head output (tensor, or list/tuple of tensors)."""
    if isinstance(output, list | tuple):
        return type(output)(_fixed(o, seed + i, positive=positive) for i, o in enumerate(output))
    generator = torch.Generator().manual_seed(seed + output.numel())
    values = torch.rand(output.shape, generator=generator)
    values = values * 0.6 + 0.2 if positive else (values - 0.5) * 2
    values = values.to(torch.bfloat16)  # exactly representable in both precisions
    return values if output.dtype == torch.bfloat16 else values.float()


def _fix_heads(model, positive_deltas):
    def rpn_head(module, inputs, output):
        logits, deltas = output
        return _fixed(logits, 1), _fixed(deltas, 100, positive=positive_deltas)

    def predictor(module, inputs, output):
        first, second = output
        return _fixed(first, 200), _fixed(second, 300, positive=positive_deltas)

    model.rpn.head.register_forward_hook(rpn_head)
    if getattr(model, "roi_heads", None) is not None:
        model.roi_heads.box_predictor.register_forward_hook(predictor)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("rpn_tiny", {}),
        ("rpn_tiny", {"roi_heads": True, "scoring": "roi"}),
        ("oln_tiny", {}),
        ("double_head_tiny", {"num_classes": 3, "scoring": "roi"}),
        ("double_head_tiny", {"num_classes": 3, "scoring": "cls", "detection_score_thresh": 0.0}),
    ],
    ids=["rpn", "rpn-roi", "oln", "double-head-roi", "double-head-cls"],
)
def test_boxes_stay_fp32_under_bf16_autocast(name, options):
    torch.manual_seed(0)
    model = owp.create_model(name, min_size=SIZE, max_size=SIZE, **options).eval()
    _fix_heads(model, positive_deltas=name == "oln_tiny")
    images = [torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))]
    with torch.no_grad():
        reference = model(images)[0]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(images)[0]
    assert mixed["boxes"].dtype == torch.float32
    assert len(reference["boxes"]) > 10 and float(reference["boxes"].max()) > 256
    assert mixed["boxes"].shape == reference["boxes"].shape
    torch.testing.assert_close(mixed["boxes"], reference["boxes"], rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("name", ["rpn_tiny", "oln_tiny", "double_head_tiny"])
def test_anchors_are_fp32_whatever_the_feature_dtype(name):
    model = owp.create_model(name, min_size=SIZE, max_size=SIZE)
    images, _ = model.transform([torch.rand(3, SIZE, SIZE)])
    features = [torch.zeros(1, 8, SIZE // s, SIZE // s) for s in (4, 8, 16, 32, 64)]
    fp32 = model.rpn.anchor_generator(images, features)
    bf16 = model.rpn.anchor_generator(images, [f.bfloat16() for f in features])
    assert bf16[0].dtype == torch.float32
    assert torch.equal(bf16[0], fp32[0])

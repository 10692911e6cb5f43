"""Running files written by ``owp export`` with ONNX Runtime: :class:`OnnxProposer`.

The graph's interface (see :mod:`owp.export.onnx`): input :data:`INPUT_NAME`, ``float32
[3, H, W]`` RGB in 0..1; outputs :data:`AGNOSTIC_OUTPUTS` and, when the model classifies,
:data:`CLASS_OUTPUTS`, then the same for each further scoring as ``<output>:<scoring>``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from owp.errors import OwpInputError
from owp.models.contract import ExportKind

INPUT_NAME = "image"
AGNOSTIC_OUTPUTS: tuple[str, ...] = ("boxes", "scores", "objectness")
CLASS_OUTPUTS: tuple[str, ...] = ("labels", "class_scores")


class OnnxProposer:
    """An exported owp ONNX file run with ONNX Runtime, a
    :class:`~owp.models.contract.ProposalModel` that only predicts.

    ``proposer(images)`` with ``images`` a list of ``Tensor[3, H, W]`` in 0..1 returns per image
    a dict of ``boxes``, ``scores``, ``objectness`` (and ``labels``, ``class_scores``) as
    tensors, exactly the outputs of the first exported scoring. ``metadata`` holds the file's
    ``owp_*`` entries (``config`` and the lists decoded from JSON). The graph resizes its input
    itself (no ``transform`` to batch by), has no parts to train and does not export again.
    """

    PARTS: ClassVar[dict[str, tuple[str, ...]]] = {}
    LOSS_PARTS: ClassVar[dict[str, tuple[str, ...]]] = {}
    EXPORT_AS: ClassVar[ExportKind | None] = None
    EXPORT_REFUSAL: ClassVar[str] = "is already an ONNX file"
    WEIGHTS_PSEUDO: ClassVar[bool] = False
    OBJECTNESS_MAPS: ClassVar[bool] = False
    COMPILED_PARTS: ClassVar[tuple[str, ...]] = ()
    TORCH: ClassVar[bool] = False
    postprocess_config = None
    transform = None
    backbone = None
    pseudo_weight = 1.0
    iteration = 0

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        ort = require_extra("onnxruntime")
        self.path = Path(path)
        if not self.path.is_file():
            raise OwpInputError("ONNX file not found", path=self.path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise OwpInputError(
                f"not a readable ONNX file ({type(error).__name__}: {first[:200]})", path=self.path
            ) from None
        raw = self.session.get_modelmeta().custom_metadata_map
        if "owp_outputs" not in raw:
            raise OwpInputError(
                "not an owp export (no owp_* metadata); write it with `owp export`", path=self.path
            )
        self.metadata: dict[str, Any] = {}
        for key, value in raw.items():
            if key.startswith("owp_"):
                name = key.removeprefix("owp_")
                try:
                    self.metadata[name] = json.loads(value) if name != "input" else value
                except json.JSONDecodeError:
                    self.metadata[name] = value
        names = [o.name for o in self.session.get_outputs()]
        inputs = [i.name for i in self.session.get_inputs()]
        if inputs != [INPUT_NAME] or names[:3] != list(AGNOSTIC_OUTPUTS):
            raise OwpInputError(
                f"unexpected ONNX interface (inputs {inputs}, outputs {names[:5]})", path=self.path
            )
        self.output_names = [n for n in names if ":" not in n]
        names_ = self.metadata.get("class_names")
        self.class_names = list(names_) if isinstance(names_, list) else None
        ids = self.metadata.get("category_ids")
        self.category_ids = list(ids) if isinstance(ids, list) else None
        self.config = self.metadata.get("config")
        self.training = False

    @property
    def classifies(self) -> bool:
        """Whether the graph outputs ``labels`` and ``class_scores``."""
        return "labels" in self.output_names

    @property
    def scoring(self) -> str:
        return self.metadata.get("scorings", ["?"])[0]

    def eval(self) -> OnnxProposer:
        return self

    def to(self, device: Any) -> OnnxProposer:
        """ONNX Runtime runs on the CPU here: any device request is accepted and ignored."""
        return self

    def run(self, image: Tensor) -> dict[str, Tensor]:
        """The first scoring's outputs for one image ``[3, H, W]`` in 0..1."""
        array = image.detach().to("cpu", torch.float32).contiguous().numpy()
        values = self.session.run(self.output_names, {INPUT_NAME: array})
        return {
            name: torch.from_numpy(value)
            for name, value in zip(self.output_names, values, strict=True)
        }

    def __call__(self, images: Sequence[Tensor]) -> list[dict[str, Tensor]]:
        return [self.run(image) for image in images]

    def detect_per_config(
        self, images: Sequence[Tensor], configs: Sequence[Any]
    ) -> list[list[dict[str, Tensor]]]:
        """The graph's outputs for each config; its selection is built in, so every config must
        be its own (``postprocess_config``, ``None``)."""
        if any(config is not None for config in configs):
            raise OwpInputError(
                "an exported ONNX file has its postprocess options built in; export again with "
                "other options",
                path=self.path,
            )
        outputs = self(images)
        return [outputs for _ in configs]

    def training_stats(self) -> dict[str, float]:
        """Nothing to log: an ONNX graph does not train."""
        return {}


def require_extra(module: str) -> Any:
    """Import an optional dependency or fail in one line saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise OwpInputError(
            f"{module} is not installed; install the export extra: pip install 'owp[export]'"
        ) from None

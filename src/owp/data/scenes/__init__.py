"""Scene styles of the embedded synthetic open-world set, by name.

A style decides what an image looks like and which object families exist; everything written
around the images (COCO files, split, ``objects.json``, manifest) is
:mod:`owp.data.synthetic`'s and the same for every style.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from owp.data.scenes import flat, photo
from owp.data.scenes.common import SceneObject, SceneSettings


@dataclass(frozen=True)
class SceneStyle:
    """A named scene style: its families (base ones labelled for training, novel ones only
    evaluated), the text of the COCO ``info.description``, the default largest object count,
    and ``render(settings, image_id) -> (RGB uint8 [S, S, 3], visible objects)``."""

    name: str
    base_families: tuple[str, ...]
    novel_families: tuple[str, ...]
    description: str
    default_max_objects: int
    render: Callable[[SceneSettings, int], tuple[np.ndarray, list[SceneObject]]]

    @property
    def families(self) -> tuple[str, ...]:
        """Base then novel families; category id = position + 1."""
        return self.base_families + self.novel_families


STYLES: dict[str, SceneStyle] = {
    "flat": SceneStyle(
        "flat",
        flat.BASE_FAMILIES,
        flat.NOVEL_FAMILIES,
        "owp synthetic open-world shapes",
        8,
        flat.render_flat,
    ),
    "photo": SceneStyle(
        "photo",
        photo.BASE_FAMILIES,
        photo.NOVEL_FAMILIES,
        "owp synthetic open-world scenes (photo style)",
        15,
        photo.render_photo,
    ),
}

"""Pretrained torchvision weights, fetched as torchvision fetches them.

The first use of a torchvision weights enum member (``ResNet50_Weights.IMAGENET1K_V1``, the
COCO detectors of ``torchvision:NAME``) downloads its file through torchvision's own loader
(:meth:`WeightsEnum.get_state_dict`, i.e. :func:`torch.hub.load_state_dict_from_url`) into the
torch hub cache, ``<torch.hub.get_dir()>/checkpoints/<file of the URL>``, with a progress bar
and the hash check of the file name's hash part (``resnet50-0676ba61.pth``); later uses read
the cached file. ``OWP_OFFLINE=1`` in the environment (``owp --offline``) forbids downloads.
Without the file and without a download, the error is one line naming the file, the cache path
and the URL.
"""

from __future__ import annotations

from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlparse

import torch
from torchvision.models import WeightsEnum

from owp.errors import OwpInputError
from owp.offline import OFFLINE_ENV, is_offline


def cache_file(weights: WeightsEnum) -> Path:
    """Where torch hub keeps the file of ``weights``: ``<hub dir>/checkpoints/<URL's name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def fetch_weights(weights: WeightsEnum, *, progress: bool = True) -> Path:
    """The cached file of ``weights``, downloaded first if it is not in the cache.

    Raises :class:`OwpInputError` (one line naming the file, the cache path and the URL) when
    the file is missing and downloads are off, or when the download fails or its hash does not
    match (torch hub then keeps nothing).
    """
    file = cache_file(weights)
    if file.is_file():
        return file
    name = f"{type(weights).__name__}.{weights.name}"
    fetch_it = f"fetch {weights.url} and place it at this path, in the torch hub cache"
    if is_offline():
        raise OwpInputError(
            f"weights {name} are not in the torch hub cache and downloads are off "
            f"({OFFLINE_ENV}=1 or --offline); {fetch_it}",
            path=file,
        )
    try:
        weights.get_state_dict(progress=progress, check_hash=True, weights_only=True)
    except (URLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise OwpInputError(
            f"cannot download weights {name} ({reason}); {fetch_it}", path=file
        ) from None
    except RuntimeError as error:  # torch hub's hash check, or an unreadable download
        raise OwpInputError(
            f"downloaded weights {name} are not the published file ({error}); {fetch_it}",
            path=file,
        ) from None
    return file

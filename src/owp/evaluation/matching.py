"""COCOeval's class-agnostic greedy matching, vectorised over images with numpy.

pycocotools matches each image on its own: detections ranked by score (stable mergesort) and
cut to ``maxDets[-1]`` take, one after the other, the best still-free ground-truth box with
IoU >= t — a regular object before an ignored one (crowd regions, boxes outside the area
range), the highest IoU, the later box on ties; crowd regions are never used up; the crowd IoU
is intersection over the detection's area. Recall at budget k is the share of regular objects
taken by a detection ranked below k (``rc[-1]`` of COCOeval's accumulate: the last, hence largest,
recall of its PR curve).

This module reproduces those rules exactly, for every image, IoU threshold and area range at
once:

* :func:`candidate_pairs` lists the (detection, ground truth, IoU) pairs with IoU >= 0.5, with
  pycocotools' arithmetic (``bbIou``), by looping over the ground-truth slot of each image
  (images ordered by their ground-truth count, so that slot ``j`` is one contiguous run of
  detections) rather than over images.
* A ground-truth box whose candidate detections have no other candidate is matched on its own:
  by its best-ranked detection reaching each threshold (:func:`_first_rank_per_gt`).
* The rest — detections that could take one of several boxes — goes to :func:`greedy_match`,
  which runs every matching problem (threshold x area range x image) in rounds: each unresolved
  detection proposes its best free candidate and keeps it when no earlier unresolved detection
  has that box among its candidates; the earliest one of each image always does, and on real
  data a few rounds settle everything.

The greedy rules make one simplification exact: for recall only regular objects matter, and a
detection only turns to an ignored box when no regular one is free, so recall is computed on the
regular boxes alone. The OLN protocol's filter, which needs the ignored boxes, uses
:func:`greedy_match` with its preference flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

IOU_THRESHOLDS = np.minimum(
    np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True), 1 - 1e-10
)
"""pycocotools' ``Params.iouThrs``, capped at ``1 - 1e-10`` as its evaluateImg caps them."""

PAIR_CHUNK = 1 << 21
"""Detections handled per array operation when listing candidate pairs (bounds memory)."""

_NEVER = np.iinfo(np.int64).max

NOT_COUNTED = _NEVER
"""The rank of a detection that takes part in matching but counts in no budget."""


@dataclass
class Layout:
    """Ground truth and ranked detections laid out for matching.

    Images are renumbered by descending ground-truth count (``position``). Ground-truth boxes
    are sorted by (position, category id, file order) — COCOeval's order within an image with
    ``useCats=0`` — and detections by (position, rank), keeping each image's best ``max_det``.

    Attributes:
        gt_index: for each laid-out box, its index in the input ground-truth arrays.
        gt_start, gt_count: per position, the first laid-out box and how many.
        det_index: for each laid-out detection, its index in the input detection arrays.
        det_position: the image position of each laid-out detection.
        det_rank: its rank (0 = best) within its image.
    """

    gt_index: np.ndarray
    gt_start: np.ndarray
    gt_count: np.ndarray
    det_index: np.ndarray
    det_position: np.ndarray
    det_rank: np.ndarray

    def det_bounds(self) -> np.ndarray:
        """``[P + 1]``: laid-out detections of position ``p`` are ``det_bounds[p]:[p + 1]``."""
        per_image = np.bincount(self.det_position, minlength=len(self.gt_count))
        return np.concatenate([[0], np.cumsum(per_image)])

    def rerank(self, keep: np.ndarray) -> np.ndarray:
        """Ranks within each image counting only the detections ``keep`` marks (the others'
        values are meaningless)."""
        before = np.concatenate([[0], np.cumsum(keep)])
        return before[:-1] - before[self.det_bounds()[:-1]][self.det_position]


def layout(
    num_images: int,
    gt_image: np.ndarray,
    gt_category: np.ndarray,
    det_image: np.ndarray,
    det_scores: np.ndarray,
    max_det: int,
) -> Layout:
    """Lay out ground truth and detections (see :class:`Layout`).

    Args:
        num_images: how many images; image indices run from 0.
        gt_image, gt_category: image index and category id of every ground-truth box.
        det_image, det_scores: image index and score of every detection.
        max_det: detections kept per image (COCOeval's ``maxDets[-1]``).
    """
    gt_count = np.bincount(gt_image, minlength=num_images)
    order = np.argsort(-gt_count, kind="stable")
    position = np.empty(num_images, dtype=np.int64)
    position[order] = np.arange(num_images)
    gt_index = np.lexsort((np.arange(len(gt_image)), gt_category, position[gt_image]))
    counts = gt_count[order]
    starts = np.cumsum(counts) - counts
    by_score = np.argsort(-det_scores, kind="stable")
    key = position[det_image[by_score]]
    key = key.astype(np.uint16) if num_images <= np.iinfo(np.uint16).max else key
    det_index = by_score[np.argsort(key, kind="stable")]
    det_position = position[det_image[det_index]]
    per_image = np.bincount(det_position, minlength=num_images)
    rank = np.arange(len(det_index)) - (np.cumsum(per_image) - per_image)[det_position]
    keep = rank < max_det
    return Layout(
        gt_index=gt_index,
        gt_start=starts,
        gt_count=counts,
        det_index=det_index[keep],
        det_position=det_position[keep],
        det_rank=rank[keep],
    )


@dataclass
class Pairs:
    """Candidate (detection, ground truth) pairs, in laid-out indices.

    Pairs of one ground-truth box are contiguous and ordered by detection (hence by rank).
    """

    det: np.ndarray
    gt: np.ndarray
    iou: np.ndarray

    def subset(self, keep: np.ndarray) -> Pairs:
        return Pairs(self.det[keep], self.gt[keep], self.iou[keep])


def candidate_pairs(
    lay: Layout,
    det_boxes: np.ndarray,
    gt_boxes: np.ndarray,
    gt_crowd: np.ndarray | None = None,
    min_iou: float = float(IOU_THRESHOLDS[0]),
) -> Pairs:
    """Every (detection, box of its image) pair with IoU >= ``min_iou``.

    ``det_boxes`` and ``gt_boxes`` are xywh in laid-out order. IoU is pycocotools' ``bbIou``
    computed with the same floating-point operations: for a crowd box the union is the
    detection's area.
    """
    dx, dy, dw, dh = (np.ascontiguousarray(c) for c in det_boxes.T)
    dx2, dy2, darea = dx + dw, dy + dh, dw * dh
    gx, gy, gw, gh = (np.ascontiguousarray(c) for c in gt_boxes.T)
    gx2, gy2, garea = gx + gw, gy + gh, gw * gh
    crowd = gt_crowd if gt_crowd is not None and gt_crowd.any() else None
    det_gt_start = lay.gt_start[lay.det_position]
    det_bounds = lay.det_bounds()
    dets, gts, ious = [], [], []
    for slot in range(int(lay.gt_count.max(initial=0))):
        images = int(np.searchsorted(-lay.gt_count, -slot, side="left"))
        for start in range(0, int(det_bounds[images]), PAIR_CHUNK):
            stop = min(int(det_bounds[images]), start + PAIR_CHUNK)
            g = det_gt_start[start:stop] + slot
            w = np.minimum(dx2[start:stop], gx2[g]) - np.maximum(dx[start:stop], gx[g])
            hit = np.flatnonzero(w > 0)
            d, g, w = hit + start, g[hit], w[hit]
            h = np.minimum(dy2[d], gy2[g]) - np.maximum(dy[d], gy[g])
            hit = np.flatnonzero(h > 0)
            d, g, w, h = d[hit], g[hit], w[hit], h[hit]
            inter = w * h
            union = darea[d] + garea[g] - inter
            if crowd is not None:
                union = np.where(crowd[g], darea[d], union)
            iou = inter / union
            hit = np.flatnonzero(iou >= min_iou)
            dets.append(d[hit])
            gts.append(g[hit])
            ious.append(iou[hit])
    if not dets:
        return Pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    return Pairs(np.concatenate(dets), np.concatenate(gts), np.concatenate(ious))


def greedy_match(
    problem: np.ndarray,
    det: np.ndarray,
    gt: np.ndarray,
    iou: np.ndarray,
    num_dets: int,
    num_gts: int,
    preferred: np.ndarray | None = None,
    crowd: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """COCOeval's greedy matching of independent problems given by their candidate pairs.

    In each problem, detections in ascending ``det`` order (within an image: rank order) take
    the best candidate box not taken before: ``preferred`` (regular) over not, then the highest
    IoU, then the highest ``gt`` index. Boxes flagged ``crowd`` are never taken up. Pairs hold
    only candidates (IoU at or above the problem's threshold); the comparison of ``det`` values
    only ever involves detections of one image, since a box belongs to one image.

    Returns:
        ``(problem, det, gt)`` of every match.
    """
    if preferred is None:
        preferred = np.ones(len(det), dtype=bool)
    if crowd is None:
        crowd = np.zeros(len(det), dtype=bool)
    by_det = problem * num_dets + det
    order = np.lexsort((gt, iou, preferred, by_det))
    by_det, det, gt, crowd = by_det[order], det[order], gt[order], crowd[order]
    by_gt = problem[order] * num_gts + gt
    gt_order = np.argsort(by_gt * num_dets + det, kind="stable")
    found: list[tuple[np.ndarray, np.ndarray]] = []
    while len(det):
        new_group = np.r_[True, by_det[1:] != by_det[:-1]]
        group = np.cumsum(new_group) - 1
        best = np.r_[np.flatnonzero(new_group)[1:] - 1, len(det) - 1]
        keys = by_gt[gt_order]
        new_run = np.r_[True, keys[1:] != keys[:-1]]
        run_sorted = np.cumsum(new_run) - 1
        first = np.empty(len(det), dtype=np.int64)
        first[gt_order] = det[gt_order][new_run][run_sorted]
        run = np.empty(len(det), dtype=np.int64)
        run[gt_order] = run_sorted
        safe = crowd[best] | (first[best] == det[best])
        won = best[safe]
        found.append((by_det[won], gt[won]))
        taken = np.zeros(int(run_sorted[-1]) + 1, dtype=bool)
        taken[run[won[~crowd[won]]]] = True
        alive = ~(safe[group] | taken[run])
        moved = np.cumsum(alive) - 1
        gt_order = moved[gt_order[alive[gt_order]]]
        by_det, det, gt, crowd, by_gt = (a[alive] for a in (by_det, det, gt, crowd, by_gt))
    if not found:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    keys = np.concatenate([k for k, _ in found])
    return keys // num_dets, keys % num_dets, np.concatenate([g for _, g in found])


def _first_det_per_gt(pairs: Pairs, thresholds: np.ndarray, num_gts: int) -> np.ndarray:
    """``[T, G]``: per threshold, the first detection (lowest laid-out index, hence best rank
    in its image) among each box's pairs reaching it — the box's match when its detections
    have no other candidate; ``_NEVER`` if none reaches it."""
    out = np.full((len(thresholds), num_gts), _NEVER, dtype=np.int64)
    if not len(pairs.gt):
        return out
    starts = np.flatnonzero(np.r_[True, pairs.gt[1:] != pairs.gt[:-1]])
    owners = pairs.gt[starts]
    for t, threshold in enumerate(thresholds):
        out[t, owners] = np.minimum.reduceat(
            np.where(pairs.iou >= threshold, pairs.det, _NEVER), starts
        )
    return out


def _shared(pairs: Pairs, num_dets: int, num_gts: int) -> np.ndarray:
    """Per box: whether one of its candidate detections has another candidate box."""
    per_det = np.bincount(pairs.det, minlength=num_dets)
    multi = per_det[pairs.det] > 1
    return np.bincount(pairs.gt, weights=multi, minlength=num_gts) > 0


def recall_counts(
    pairs: Pairs,
    rank: np.ndarray,
    regular: np.ndarray,
    budgets: Sequence[int],
    thresholds: np.ndarray = IOU_THRESHOLDS,
) -> np.ndarray:
    """Regular boxes matched within each budget: ``[T, A, K]`` counts.

    Every detection of ``pairs`` takes part in the matching; ``rank`` only decides which
    matches count within a budget. A detection whose rank is :data:`NOT_COUNTED` still takes
    the box it matches, which then counts for no budget (OLN's wrapper drops the detections
    matched to base objects after matching, keeping the matches they made).

    Args:
        pairs: candidate pairs between detections and the boxes that can be matched (no crowd
            regions: they never count), grouped by box, IoU >= ``thresholds[0]``.
        rank: ``[D]`` each detection's position in its image's budget, or
            :data:`NOT_COUNTED`.
        regular: ``[A, G]`` which boxes are regular in each area range.
        budgets: the k of AR@k, ascending.
    """
    num_dets, num_gts = len(rank), regular.shape[1]
    shared = _shared(pairs, num_dets, num_gts)
    alone = pairs.subset(~shared[pairs.gt])
    solo_det = _first_det_per_gt(alone, thresholds, num_gts)
    solo_rank = np.full_like(solo_det, _NEVER)
    found = solo_det != _NEVER
    solo_rank[found] = rank[solo_det[found]]
    together = pairs.subset(shared[pairs.gt])
    budgets = np.asarray(budgets)
    counts = np.zeros((len(thresholds), len(regular), len(budgets)), dtype=np.int64)
    for a, is_regular in enumerate(regular):
        matched = solo_rank.copy()
        part = together.subset(is_regular[together.gt])
        if len(part.gt):
            reached = np.searchsorted(thresholds, part.iou, side="right")
            repeated = np.repeat(np.arange(len(part.gt)), reached)
            threshold = np.arange(len(repeated)) - np.repeat(np.cumsum(reached) - reached, reached)
            t, d, g = greedy_match(
                threshold,
                part.det[repeated],
                part.gt[repeated],
                part.iou[repeated],
                num_dets,
                num_gts,
            )
            matched[t, g] = rank[d]
        for t in range(len(thresholds)):
            ranks = np.sort(matched[t, is_regular])
            counts[t, a] = np.searchsorted(ranks, budgets, side="left")
    return counts


def first_matches(
    pairs: Pairs,
    num_dets: int,
    num_gts: int,
    preferred: np.ndarray,
    crowd: np.ndarray,
) -> np.ndarray:
    """COCOeval's matching at one threshold, with ignored boxes: per detection, the index of the
    box it takes, or -1.

    ``preferred`` is ``[A, G]`` (regular boxes per problem, e.g. per area range); the answer is
    ``[A, D]``. ``crowd`` ``[G]`` marks crowd regions, which every detection may take.
    """
    matched = np.full((len(preferred), num_dets), -1, dtype=np.int64)
    shared = _shared(pairs, num_dets, num_gts)
    alone = pairs.subset(~shared[pairs.gt])
    if len(alone.gt):
        starts = np.flatnonzero(np.r_[True, alone.gt[1:] != alone.gt[:-1]])
        first = np.zeros(len(alone.gt), dtype=bool)
        first[starts] = True
        takes = first | crowd[alone.gt]
        matched[:, alone.det[takes]] = alone.gt[takes]
    together = pairs.subset(shared[pairs.gt])
    if len(together.gt):
        count = len(together.gt)
        problem = np.repeat(np.arange(len(preferred)), count)
        p, d, g = greedy_match(
            problem,
            np.tile(together.det, len(preferred)),
            np.tile(together.gt, len(preferred)),
            np.tile(together.iou, len(preferred)),
            num_dets,
            num_gts,
            preferred=preferred[:, together.gt].reshape(-1),
            crowd=np.tile(crowd[together.gt], len(preferred)),
        )
        matched[p, d] = g
    return matched

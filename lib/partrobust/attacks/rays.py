"""RayS: the hard-label L-inf black-box attack of Chen & Gu (KDD 2020), in [0, 1] pixel space.

Reference: Jinghui Chen and Quanquan Gu, "RayS: A Ray Searching Method for Hard-label Adversarial
Attack", KDD 2020 (arXiv:2006.12792). Written from the paper; no code was copied.

What it does. RayS only sees the predicted label (the argmax of the logits). It searches over
*sign directions* d in {-1, +1}^D (D = C*H*W): along a ray ``x(r) = clip(x + r * d, 0, 1)`` the
radius r is exactly the L-inf distance to x, so the attack looks for the direction whose ray leaves
the correct class at the smallest radius r*. Each sample keeps its best direction d and its radius
r* (inf while no ray has left the class). The first direction is all ones. Then a hierarchical
search: at stage s the flattened input is cut into 2^s contiguous blocks of ceil(D / 2^s)
coordinates (the block size bottoms out at 1 coordinate, after which the stages keep cycling over
single coordinates); for each block in turn the signs of d in that block are flipped, and

* one query at the current r* (or at the largest radius that still moves the point, when that is
  smaller or r* is inf) tells whether the flipped direction can improve at all ("only query when
  it can improve");
* if that point is misclassified, a binary search over [0, r*] finds the new radius to
  ``tolerance`` (pixel units); the flipped direction is accepted if it is strictly smaller.

Tolerance. The reference bisects along the L2-normalised sign direction ``d / sqrt(D)`` with
tolerance 1e-3, i.e. ``1e-3 / sqrt(D)`` in L-inf pixel units: about 1.8e-5 for 3x32x32 images and
2.6e-6 for 3x224x224. That is the default here (``tolerance=None``, `reference_tolerance`), worked
out from each batch's image size. A coarser tolerance weakens the attack: RayS improves its radius
in many small steps, and a flip that improves it by less than the tolerance is mostly rejected
(tests/test_rays.py compares the robust accuracy with a port of the reference on a fixed model).

Stopping rule, per sample: as soon as r* <= eps (the attack succeeded at eps) or the sample has
spent ``query_limit`` queries. A query is one forward pass of one sample. All samples of a batch
advance together, each with its own state; samples that are done leave the forward passes.

Output. As in the authors' evaluation, the found point is projected back: the perturbation is
clipped to [-eps, eps] and the image to [0, 1]. So ``x_adv = clip(x + min(r*, eps) * d, 0, 1)``: the
found adversarial point when r* <= eps, else the point at radius eps along the best direction.
``robust`` is the model's prediction at ``x_adv`` re-scored once (clean-misclassified samples are
not robust and are not attacked: 0 queries, distance 0, x_adv = x).

Differences from the authors' code, all stated:

* radii and the binary-search ``tolerance`` are in L-inf pixel units (the default is the
  reference's tolerance converted to them, see above);
* when eps lies inside the bisection interval, the next query is made exactly at eps, so whether
  the sample breaks at eps is decided exactly, not only up to the tolerance (at most one extra
  query per accepted direction), and a bisection stops as soon as it succeeds at a radius <= eps;
* the all-ones start direction is itself tested (one query at the largest useful radius, then the
  binary search) instead of a 10-step line search at radii >= 1, which on [0, 1] images all hit
  the same clipped corner point;
* a sample stops as soon as it is broken at eps (the reference batch code keeps searching and
  only stops counting), and the budget is enforced inside the binary search, so
  ``queries <= query_limit`` always holds;
* the clean prediction and the final re-scoring of ``x_adv`` are not counted as queries (the
  authors also checked clean correctness before attacking).

RayS is deterministic: it draws no random numbers. ``seed`` is kept for an API consistent with the
other attacks and is validated but unused.
"""
from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from .base import check_images, check_logits, eval_mode, project_linf


@dataclass
class RaySResult:
    """Outcome of a RayS run, one entry per sample.

    x_adv: adversarial examples, inside the eps-ball around x and [0, 1].
    robust: True if the model still predicts y at ``x_adv`` (False for clean-misclassified samples).
    distance: the best L-inf radius r* found (an upper bound on the minimal adversarial distance,
        to ``tolerance``; the search stops early once r* <= eps); inf if no ray left the class,
        0 for clean-misclassified samples.
    queries: model queries (forward passes of that sample) the attack spent, <= query_limit.
    clean_correct: True where the clean prediction is y.
    """

    x_adv: torch.Tensor
    robust: torch.Tensor
    distance: torch.Tensor
    queries: torch.Tensor
    clean_correct: torch.Tensor

    @property
    def robust_accuracy(self) -> float:
        return self.robust.float().mean().item() if self.robust.numel() else float("nan")


def _blocks(dim: int) -> Iterator[tuple[int, int]]:
    """The hierarchical block schedule: stage s cuts [0, dim) into blocks of ceil(dim / 2^s); endless."""
    size = dim
    while True:
        for start in range(0, dim, size):
            yield start, min(dim, start + size)
        size = max(1, -(-size // 2)) if size > 1 else 1  # ceil(dim / 2^(s+1)) == ceil(ceil(dim / 2^s) / 2)


REFERENCE_TOLERANCE = 1e-3
"""The reference's binary-search tolerance, on the radius along the L2-normalised sign direction."""


def reference_tolerance(image_shape: Sequence[int]) -> float:
    """The reference's tolerance in L-inf pixel units for images of `image_shape` (C, H, W):
    ``1e-3 / sqrt(C*H*W)`` (a unit L2 step along a sign direction moves every pixel by 1 / sqrt(D))."""
    return REFERENCE_TOLERANCE / math.sqrt(math.prod(image_shape))


def _is_real(v: object) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


@dataclass
class RayS:
    """Hard-label L-inf RayS attack (Chen & Gu, 2020); see the module docstring.

    Args:
        eps: L-inf radius in [0, 1] pixel units (8/255 in the paper). eps = 0 never stops early,
            which turns the attack into a minimal-distance search over the whole budget.
        query_limit: model queries per sample (10,000 in the RayS paper).
        seed: unused (RayS is deterministic); kept for API consistency with the other attacks.
        tolerance: binary-search tolerance on the radius, in pixel units, in (0, 1]; None (default):
            the reference's, ``1e-3 / sqrt(D)`` for images of D = C*H*W values (`reference_tolerance`).
    """

    eps: float = 8 / 255
    query_limit: int = 10_000
    seed: int = 0
    tolerance: float | None = None

    def __post_init__(self) -> None:
        if not _is_real(self.eps) or not 0.0 <= float(self.eps) <= 1.0:
            raise ValueError(f"eps must be a number in [0, 1] pixel units (e.g. 8/255), got {self.eps!r}")
        if not isinstance(self.query_limit, numbers.Integral) or isinstance(self.query_limit, bool) or self.query_limit < 1:
            raise ValueError(f"query_limit must be an integer >= 1, got {self.query_limit!r}")
        if not isinstance(self.seed, numbers.Integral) or isinstance(self.seed, bool):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if self.tolerance is not None and (not _is_real(self.tolerance) or not 0.0 < float(self.tolerance) <= 1.0):
            raise ValueError(f"tolerance must be in (0, 1] pixel units or None (the reference's), got {self.tolerance!r}")
        self.eps = float(self.eps)
        self.tolerance = None if self.tolerance is None else float(self.tolerance)
        self.query_limit, self.seed = int(self.query_limit), int(self.seed)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Returns adversarial examples for (x, y); model runs in eval mode, mode restored."""
        return self.run(model, x, y).x_adv

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> RaySResult:
        """Attacks images x in [0, 1] of shape (N, ...) with labels y of shape (N,)."""
        check_images(x)
        if x.ndim < 2:
            raise ValueError(f"expected a batch of images (N, C, H, W), got shape {tuple(x.shape)}")
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"labels must have shape ({x.shape[0]},), got {tuple(y.shape)}")
        if y.is_floating_point() or y.dtype == torch.bool:
            raise ValueError(f"labels must be integer class indices, got dtype {y.dtype}")
        with eval_mode(model), torch.no_grad():
            return self._attack(model, x.detach(), y.detach().to(device=x.device, dtype=torch.long))

    def _attack(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> RaySResult:
        n, shape = x.shape[0], x.shape[1:]
        dim = math.prod(shape)
        dev = x.device
        rdt = torch.float64 if x.dtype == torch.float64 else torch.float32  # radii dtype
        limit = self.query_limit
        tol = reference_tolerance(shape) if self.tolerance is None else self.tolerance
        eps_r = torch.tensor(self.eps, dtype=rdt, device=dev)  # compare radii in one dtype only

        if n == 0:
            empty = torch.zeros(0, dtype=torch.bool, device=dev)
            return RaySResult(x.clone(), empty, torch.zeros(0, dtype=rdt, device=dev),
                              torch.zeros(0, dtype=torch.long, device=dev), empty.clone())

        logits = model(x)
        if logits.ndim != 2 or logits.shape[0] != n:
            raise ValueError(f"the model must return logits of shape ({n}, C), got {tuple(logits.shape)}")
        check_logits(logits)
        clean_correct = logits.argmax(1) == y

        flat = x.reshape(n, dim)
        queries = torch.zeros(n, dtype=torch.long, device=dev)
        r_best = torch.full((n,), math.inf, dtype=rdt, device=dev)
        d_best = torch.ones(n, dim, dtype=x.dtype, device=dev)
        done = ~clean_correct

        def point(xs: torch.Tensor, d: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
            return (xs + r.to(xs.dtype).unsqueeze(1) * d).clamp_(0.0, 1.0)

        def fooled(rows: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor, d: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
            """One query per row: True where the point at radius r along d is misclassified."""
            queries[rows] += 1
            return model(point(xs, d, r).view(-1, *shape)).argmax(1) != ys

        for block in itertools.chain([None], _blocks(dim)):  # None: test the all-ones start direction
            idx = (~done & (queries < limit)).nonzero().flatten()
            if idx.numel() == 0:
                break
            xs, ys = flat[idx], y[idx]
            cand = d_best[idx].clone()
            if block is not None:
                cand[:, block[0]:block[1]].neg_()
            # beyond this radius the clipped point no longer moves, and r is the exact L-inf distance below it
            room = torch.where(cand > 0, 1.0 - xs, xs).amax(1).to(rdt)
            hi = torch.minimum(r_best[idx], room)
            lo = torch.zeros_like(hi)
            succ = fooled(idx, xs, ys, cand, hi)
            while True:  # batched binary search on the rows whose check point was misclassified
                need = succ & (queries[idx] < limit) & (hi > eps_r) & ((hi - lo > tol) | (lo < eps_r))
                sub = need.nonzero().flatten()
                if sub.numel() == 0:
                    break
                l, h = lo[sub], hi[sub]
                mid = torch.where(l < eps_r, eps_r, (l + h) / 2)  # decide eps exactly, then bisect
                s = fooled(idx[sub], xs[sub], ys[sub], cand[sub], mid)
                hi[sub] = torch.where(s, mid, h)
                lo[sub] = torch.where(s, l, mid)
            better = succ & (hi < r_best[idx])
            rows = idx[better]
            d_best[rows] = cand[better]
            r_best[rows] = hi[better]
            done |= r_best <= eps_r

        x_adv = point(flat, d_best, torch.minimum(r_best, eps_r)).view_as(x)
        x_adv = project_linf(x_adv, x, self.eps)
        x_adv[~clean_correct] = x[~clean_correct]
        robust = clean_correct.clone()
        att = clean_correct.nonzero().flatten()
        if att.numel():
            robust[att] = model(x_adv[att]).argmax(1) == y[att]
        distance = torch.where(clean_correct, r_best, torch.zeros_like(r_best))
        return RaySResult(x_adv.detach(), robust, distance, queries, clean_correct)

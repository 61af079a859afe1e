"""RayS (hard-label L-inf black-box attack): exactness on a linear model, strength on a tiny trained
net, and the attack contract (eps-ball, budget, eval mode, no gradients, hard label only)."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from partrobust.attacks.base import InvalidInputError
import math

from partrobust.attacks.rays import RayS, RaySResult, _blocks, reference_tolerance


class Linear2(nn.Module):
    """Binary classifier with logits [0, w.x + b]: the minimal L-inf distance to its boundary is
    |w.x + b| / ||w||_1, reached along the sign direction -sign(w) * sign(w.x + b)."""

    def __init__(self, w: torch.Tensor, b: float):
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.b = b

    def forward(self, x):
        z = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(z), z], 1)


class CountingModel(nn.Module):
    """Counts the rows it is asked to classify."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.rows = 0

    def forward(self, x):
        self.rows += x.shape[0]
        return self.inner(x)


class Rescaled(nn.Module):
    """Same argmax as `inner`, very different logits."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        z = self.inner(x)
        return 1000.0 * z + 7.0 * x.flatten(1).sum(1, keepdim=True)


def linear_case(n=8, seed=0):
    """Samples at known distances 0.04..0.1 from the boundary of a linear model on 3x4x4 inputs,
    placed so that the closest boundary point stays inside [0.1, 0.9] (no clipping)."""
    g = torch.Generator().manual_seed(seed)
    d = 48
    w = (torch.rand(d, generator=g) + 0.5) * torch.where(torch.rand(d, generator=g) < 0.5, -1.0, 1.0)
    l1 = w.abs().sum()
    u = (torch.rand(n, d, generator=g) - 0.5) * 0.2
    target = torch.linspace(0.04, 0.1, n)
    side = torch.tensor([1.0, -1.0]).repeat(n // 2 + 1)[:n]
    c = side * target - (u @ w) / l1
    x = 0.5 + u + c[:, None] * w.sign()
    b = -0.5 * w.sum().item()
    model = Linear2(w, b)
    s = x @ w + b
    assert torch.allclose(s.abs() / l1, target, atol=1e-5)
    assert x.min() >= 0.2 and x.max() <= 0.8
    return model, x.view(n, 3, 4, 4), (s > 0).long(), target


class TinyNet(nn.Module):
    def __init__(self, classes=4):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 4 * 4, classes)

    def forward(self, x):
        return self.fc(F.max_pool2d(F.relu(self.bn(self.conv(x))), 2).flatten(1))


def synthetic(n, templates, g):
    y = torch.randint(0, len(templates), (n,), generator=g)
    x = (0.5 + 0.05 * templates[y] + 0.05 * torch.randn(n, 3, 8, 8, generator=g)).clamp(0, 1)
    return x, y


@pytest.fixture(scope="module")
def tiny_net():
    """A conv net with BatchNorm trained for 40 steps on 4 noisy sign templates of 3x8x8 images:
    undefended, and every class is within 0.1 L-inf of another one (eps 32/255 suffices)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    templates = torch.where(torch.rand(4, 3, 8, 8, generator=g) < 0.5, -1.0, 1.0)
    model = TinyNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        x, y = synthetic(64, templates, g)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    x, y = synthetic(24, templates, g)
    model.eval()
    with torch.no_grad():
        keep = model(x).argmax(1) == y
    assert keep.float().mean() >= 0.9, "the tiny net should learn the templates"
    return model, x[keep][:16], y[keep][:16]


def test_linear_model_distance_is_found():
    model, x, y, true = linear_case()
    res = RayS(eps=0.0, query_limit=1500, tolerance=1e-4).run(model, x, y)
    assert isinstance(res, RaySResult)
    assert res.clean_correct.all()
    # r* is a verified adversarial radius: never below the true minimum; and close to it
    assert (res.distance >= true - 1e-5).all(), (res.distance, true)
    assert (res.distance <= true * 1.01).all(), (res.distance, true)
    assert (res.queries == 1500).all()  # eps = 0 never stops early
    # with eps just above the largest r*, every sample is broken, at a radius <= eps
    eps = float(res.distance.max()) + 1e-3
    res2 = RayS(eps=eps, query_limit=1500, tolerance=1e-4).run(model, x, y)
    assert not res2.robust.any() and (res2.distance <= eps + 1e-6).all()
    assert (res2.x_adv - x).abs().max() <= eps + 1e-6


def test_linear_model_eps_decides_exactly():
    """With eps between the true distances, exactly the samples closer than eps are broken."""
    model, x, y, true = linear_case()
    eps = 0.07
    res = RayS(eps=eps, query_limit=1500, tolerance=1e-3).run(model, x, y)
    assert torch.equal(res.robust, true > eps), (res.robust, true)  # true distances: 0.0657 and 0.0743 around eps
    broken = ~res.robust
    assert (res.distance[broken] <= eps + 1e-7).all()
    assert (res.queries[broken] < 1500).all()  # broken samples stop early


def test_tiny_net_robust_accuracy_near_zero(tiny_net):
    model, x, y = tiny_net
    res = RayS(eps=32 / 255, query_limit=300).run(model, x, y)
    assert res.clean_correct.all() and len(x) == 16
    assert res.robust_accuracy <= 0.1, res.robust_accuracy
    assert (res.queries <= 300).all()
    with torch.no_grad():
        assert (model(res.x_adv).argmax(1) != y).float().mean() >= 0.9


def test_contract(tiny_net):
    model, x, y = tiny_net
    model.train()
    counting = CountingModel(model)
    counting.train()
    y_bad = y.clone()
    y_bad[:2] = (y[:2] + 1) % 4  # two clean-misclassified samples
    eps = 8 / 255
    attack = RayS(eps=eps, query_limit=60)
    res = attack.run(counting, x, y_bad)
    assert counting.training and model.training, "train mode restored"
    assert all(p.grad is None for p in model.parameters())
    delta = res.x_adv - x
    assert delta.abs().max() <= eps + 1e-6
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert (res.queries <= 60).all()
    assert (res.queries[:2] == 0).all() and not res.robust[:2].any() and not res.clean_correct[:2].any()
    assert torch.equal(res.x_adv[:2], x[:2]) and (res.distance[:2] == 0).all()
    # every forward row is a counted query, plus the clean pass and the re-scoring of the attacked ones
    assert counting.rows == res.queries.sum().item() + len(x) + int(res.clean_correct.sum())
    model.eval()
    with torch.no_grad():
        pred = model(res.x_adv).argmax(1)
    assert torch.equal(res.robust, pred == y_bad)
    assert res.x_adv.shape == x.shape and res.x_adv.dtype == x.dtype
    # hard label only: a model with the same argmax gives the same attack
    same = attack.run(Rescaled(model), x, y_bad)
    assert torch.equal(same.x_adv, res.x_adv) and torch.equal(same.queries, res.queries)
    # deterministic
    again = RayS(eps=eps, query_limit=60, seed=0).run(model, x, y_bad)
    assert torch.equal(again.x_adv, res.x_adv) and torch.equal(again.queries, res.queries)
    assert torch.equal(attack(model, x, y_bad), res.x_adv)


def test_budget_is_exact_and_inf_distance_when_nothing_found():
    model, x, y, _ = linear_case()
    res = RayS(eps=0.0, query_limit=1).run(model, x, y)
    assert (res.queries == 1).all()
    # the single query is at the all-ones corner: it fools exactly the samples not of the corner's class
    corner_class = int(model(torch.ones(1, 3, 4, 4)).argmax(1))
    assert torch.equal(res.distance.isfinite(), y != corner_class) and (y != corner_class).any()
    assert torch.isinf(res.distance[y == corner_class]).all()
    assert torch.equal(res.x_adv, x) and res.robust.all()  # eps = 0: x_adv = x
    const = Linear2(torch.zeros(48), 1.0)  # always class 1: no ray ever leaves it
    res = RayS(eps=8 / 255, query_limit=20).run(const, x[:3], torch.ones(3, dtype=torch.long))
    assert res.robust.all() and torch.isinf(res.distance).all() and (res.queries == 20).all()
    assert (res.x_adv - x[:3]).abs().max() <= 8 / 255 + 1e-6


def test_block_schedule():
    import itertools

    assert list(itertools.islice(_blocks(5), 12)) == [
        (0, 5), (0, 3), (3, 5), (0, 2), (2, 4), (4, 5), (0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (0, 1)]
    sizes = [e - s for s, e in itertools.islice(_blocks(48), 1 + 2 + 4 + 8 + 16 + 24 + 48)]
    assert sizes[0] == 48 and sizes[1:3] == [24, 24] and sizes[-48:] == [1] * 48


@pytest.mark.parametrize("kwargs", [
    {"eps": -0.1}, {"eps": 1.5}, {"eps": float("nan")}, {"eps": 8}, {"query_limit": 0}, {"query_limit": 2.5},
    {"query_limit": True}, {"tolerance": 0.0}, {"tolerance": -1e-3}, {"tolerance": 2.0}, {"tolerance": float("inf")},
    {"seed": 1.5},
])
def test_invalid_parameters(kwargs):
    with pytest.raises(ValueError):
        RayS(**kwargs)


def test_invalid_inputs():
    model, x, y, _ = linear_case(n=2)
    attack = RayS(query_limit=5)
    with pytest.raises(InvalidInputError):
        attack.run(model, x * 255, y)
    with pytest.raises(ValueError):
        attack.run(model, x, y[:1])
    with pytest.raises(ValueError):
        attack.run(model, x, y.float())
    empty = attack.run(model, x[:0], y[:0])
    assert empty.x_adv.shape == (0, 3, 4, 4) and empty.queries.numel() == 0


# --------------------------------------------------------------------------- the reference's tolerance


@torch.no_grad()
def reference_port(model, x, y, eps, query_limit, tol=1e-3):
    """A port of the reference's batch RayS (Chen & Gu's ``attack_hard_label`` / ``binary_search``):
    radii along the unit-L2 sign direction d / ||d||, each iteration flips one block (level l cuts the
    image into 2^l blocks; the first flip is the whole image), a check at the current radius, then a
    bisection to ``tol`` (no query limit inside it); every sample keeps searching until all are out
    of queries. The found point's perturbation is clipped to [-eps, eps], the image to [0, 1].
    Returns per-sample robustness (clean-correct and still correct)."""
    n, dim = len(x), x[0].numel()
    flat = x.reshape(n, dim)
    label = lambda z: model(z.view(len(z), *x.shape[1:])).argmax(1)  # noqa: E731
    queries, sgn = torch.zeros(n, dtype=torch.long), torch.ones(n, dim)
    d_t, x_final = torch.full((n,), math.inf), flat.clone()
    point = lambda unit, d: (flat + d[:, None] * unit).clamp(0, 1)  # noqa: E731

    def fooled(z, rows):
        queries[rows] += 1
        return label(z[rows]) != y[rows]

    level = ind = 0
    for _ in range(query_limit):
        size = math.ceil(dim / 2 ** level)
        start, end = ind * size, min(dim, (ind + 1) * size)
        valid = (queries < query_limit).nonzero().flatten()
        attempt = sgn.clone()
        attempt[valid, start:end] *= -1
        norm = attempt.norm(dim=1)
        unit = attempt / norm[:, None]
        lo, hi = torch.zeros(n), d_t.clone()
        search = valid[fooled(point(unit, d_t), valid)]
        hi[search] = torch.minimum(d_t, norm)[search]
        while len(search):
            mid = (lo + hi) / 2
            s = fooled(point(unit, mid), search)
            hi[search[s]], lo[search[~s]] = mid[search[s]], mid[search[~s]]
            search = search[(hi - lo)[search] > tol]
        better = (hi < d_t).nonzero().flatten()
        d_t[better], x_final[better], sgn[better] = hi[better], point(unit, hi)[better], attempt[better]
        ind += 1
        if ind == 2 ** level or end == dim:
            level, ind = level + 1, 0
        if (queries >= query_limit).all():
            break
    x_adv = (flat + (x_final - flat).clamp(-eps, eps)).clamp(0, 1)
    return (label(x_adv) == y) & (label(flat) == y)


def test_default_tolerance_is_the_references():
    """1e-3 along the unit-L2 sign direction is 1e-3 / sqrt(D) in pixel units: 1.8e-5 at 32 px, 2.6e-6 at 224 px."""
    assert reference_tolerance((3, 32, 32)) == pytest.approx(1.804e-5, rel=1e-3)
    assert reference_tolerance((3, 224, 224)) == pytest.approx(2.577e-6, rel=1e-3)
    assert RayS().tolerance is None  # None: worked out from the image size at run time


def test_default_tolerance_matches_a_port_of_the_reference(tiny_net):
    """On a fixed model, with a budget both searches finish in, our RayS at its default tolerance
    leaves exactly the port's samples robust; at the old default (1e-3 pixel units) it is weaker."""
    model, x, y = tiny_net
    model.eval()  # as the reference evaluated (an earlier test may leave the shared model in train mode)
    eps, queries = 5 / 255, 1500
    port = reference_port(model, x, y, eps, queries)
    ours = RayS(eps=eps, query_limit=queries).run(model, x, y)
    assert torch.equal(ours.robust, port), (ours.robust, port)
    assert 0 < port.float().mean() < 1  # a real test: some samples break, some do not
    coarse = RayS(eps=eps, query_limit=queries, tolerance=1e-3).run(model, x, y)
    assert coarse.robust_accuracy > ours.robust_accuracy  # the old default: 87.5 % robust where the port leaves 50 %


def test_rays_rows_state_the_tolerance():
    from partrobust.eval.config import EvalConfig
    from partrobust.eval.evaluators import evaluate

    model, x, y, _ = linear_case(n=4)
    cfg = EvalConfig(pgd_steps=2, pgd_restarts=1, autoattack=False, masking_checks=False, evaluators=["rays"], rays_queries=5)
    rows, _ = evaluate(model, x, torch.zeros(4, 4, 4, dtype=torch.long), y, cfg, progress=False)
    (note,) = [r["note"] for r in rows if r["metric"] == "rays_accuracy"]
    assert "5 queries per image" in note and "tolerance 0.00014 pixel units" in note  # 1e-3 / sqrt(48)

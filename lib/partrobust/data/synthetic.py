"""Built-in procedurally generated part dataset, so every notebook runs without downloads.

Each image holds one object of one of C classes. A class is a fixed *template*: a layout
of 2-5 parts (class c has ``2 + c % 4``), each part a union of ellipses / rectangles /
triangles placed in object coordinates (x right, y down, the object spanning about
[-1, 1]^2). Templates do not depend on the data seed; the first five are hand-designed
(snowman, rocket, car, robot, mushroom) and further classes get random layouts from a fixed
RNG. Part ids are class-specific (class 0 owns ids 1..2, class 1 owns 3..5, ...), as in
Part-ImageNet, so the part mask determines the class.

Per image (all drawn from ``numpy.random.default_rng([seed, split_index, image_index])``):
random position, scale (bounding circle 45-85 % of the image side), rotation (+-45 deg),
mirror and aspect jitter; part colours drawn from one palette shared by all classes; a
cluttered background (two palette colours mixed by low-frequency noise, plus unlabelled
distractor shapes in palette colours and textures) and pixel noise. Neither colour nor
position nor texture (at ``texture_cue_prob=0``) carries class information: the shape
layout does.

Texture cue: every class k owns a stripe texture (orientation ``pi * k / C``, period
depending on k). With probability ``texture_cue_prob`` the object is filled with its own
class's texture, otherwise with a texture drawn uniformly from all classes' textures. The
texture index used is stored in the split files' extra ``texture`` column, for later
spurious-correlation and shape-vs-texture studies (a cue-conflict subset is
``texture != label``). The random draws are the same whatever ``texture_cue_prob`` is, so
changing it changes only the textures, not the layouts.

Labels are balanced per split (counts differ by at most one). Same config -> byte-identical
files. Output is the prepared format (see ``partrobust.data.prepared``).
"""
from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .convert import run_jobs
from .prepared import (
    METADATA_FILE,
    SPLITS,
    DatasetMetadata,
    PartInfo,
    PreparedDatasetError,
    load_metadata,
    read_split,
    split_path,
    validate_prepared,
    write_image,
    write_mask,
    write_metadata,
    write_split,
)

GENERATOR = "partrobust.data.synthetic"
GENERATOR_VERSION = 2
DATASET_NAME = "synthetic-parts"

MAX_ROTATION = math.pi / 4
OBJECT_FRACTION = (0.6, 0.9)  # diameter of the object's bounding circle / image side
ASPECT_JITTER = 0.15  # log-aspect range
N_DISTRACTORS = (2, 5)  # [low, high) distractor shapes per image
DISTRACTOR_FRACTION = (0.05, 0.12)  # distractor half-size / image side
PIXEL_NOISE = 0.03
STRIPE_CONTRAST = 0.5
_CHUNK = 50  # images per work unit

# One palette shared by every class, part, distractor and background (RGB in [0, 1]).
PALETTE = np.array(
    [
        [0.90, 0.10, 0.10], [0.10, 0.60, 0.15], [0.15, 0.30, 0.90], [0.95, 0.80, 0.10],
        [0.60, 0.20, 0.75], [0.10, 0.75, 0.80], [0.95, 0.50, 0.10], [0.95, 0.45, 0.70],
        [0.55, 0.35, 0.15], [0.60, 0.85, 0.25], [0.90, 0.90, 0.90], [0.35, 0.35, 0.40],
    ],
    dtype=np.float32,
)


@dataclass
class SyntheticConfig:
    """Settings of the synthetic dataset; recorded in metadata["info"]["config"]."""

    num_classes: int = 5
    image_size: int = 64
    n_train: int = 2000
    n_val: int = 400
    n_test: int = 400
    texture_cue_prob: float = 0.0
    seed: int = 0

    def split_sizes(self) -> dict[str, int]:
        return {"train": self.n_train, "val": self.n_val, "test": self.n_test}

    def check(self) -> None:
        """Raise ValueError naming the bad field."""
        if self.num_classes < 2:
            raise ValueError(f"SyntheticConfig.num_classes must be >= 2, got {self.num_classes}")
        if self.image_size < 16:
            raise ValueError(f"SyntheticConfig.image_size must be >= 16, got {self.image_size}")
        for split, n in self.split_sizes().items():
            if n < 1:
                raise ValueError(f"SyntheticConfig.n_{split} must be >= 1, got {n}")
        if not 0.0 <= self.texture_cue_prob <= 1.0:
            raise ValueError(
                f"SyntheticConfig.texture_cue_prob must be in [0, 1], got {self.texture_cue_prob}"
            )


# --------------------------------------------------------------------------- templates


@dataclass(frozen=True)
class Primitive:
    """A filled shape in object coordinates: centre, half-sizes, rotation (radians)."""

    shape: str  # "ellipse" | "rect" | "triangle" (apex at -y, base at +y)
    cx: float
    cy: float
    sx: float
    sy: float
    angle: float = 0.0

    def radius(self) -> float:
        """Largest distance from the object origin to a point of the shape."""
        if self.shape == "ellipse":
            t = np.linspace(0.0, 2 * math.pi, 256, endpoint=False)
            a, b = np.cos(t), np.sin(t)
        elif self.shape == "rect":
            a, b = np.array([-1.0, 1.0, 1.0, -1.0]), np.array([-1.0, -1.0, 1.0, 1.0])
        else:  # triangle: apex (0, -1), base corners (+-1, 1)
            a, b = np.array([0.0, -1.0, 1.0]), np.array([-1.0, 1.0, 1.0])
        a, b = a * self.sx, b * self.sy
        c, s = math.cos(self.angle), math.sin(self.angle)
        x, y = c * a - s * b + self.cx, s * a + c * b + self.cy
        return float(np.sqrt(x * x + y * y).max())


@dataclass(frozen=True)
class PartTemplate:
    name: str
    primitives: tuple[Primitive, ...]


@dataclass(frozen=True)
class ClassTemplate:
    """A class: its name and its parts, drawn in order (later parts overwrite earlier ones)."""

    name: str
    parts: tuple[PartTemplate, ...]

    @functools.cached_property
    def radius(self) -> float:
        """Largest distance from the object origin to a point of the object."""
        return max(p.radius() for part in self.parts for p in part.primitives)


def _p(shape: str, cx: float, cy: float, sx: float, sy: float, angle: float = 0.0) -> Primitive:
    return Primitive(shape, cx, cy, sx, sy, angle)


_HAND_TEMPLATES: tuple[ClassTemplate, ...] = (
    ClassTemplate("snowman", (  # 2 parts
        PartTemplate("body", (_p("ellipse", 0.0, 0.30, 0.62, 0.62),)),
        PartTemplate("head", (_p("ellipse", 0.0, -0.55, 0.33, 0.33),)),
    )),
    ClassTemplate("rocket", (  # 3 parts
        PartTemplate("fins", (_p("triangle", -0.38, 0.62, 0.22, 0.32),
                              _p("triangle", 0.38, 0.62, 0.22, 0.32))),
        PartTemplate("body", (_p("rect", 0.0, 0.10, 0.26, 0.62),)),
        PartTemplate("nose", (_p("triangle", 0.0, -0.76, 0.26, 0.24),)),
    )),
    ClassTemplate("car", (  # 4 parts
        PartTemplate("cabin", (_p("rect", -0.08, -0.30, 0.50, 0.24),)),
        PartTemplate("body", (_p("rect", 0.0, 0.12, 0.95, 0.26),)),
        PartTemplate("wheels", (_p("ellipse", -0.55, 0.45, 0.25, 0.25),
                                _p("ellipse", 0.55, 0.45, 0.25, 0.25))),
        PartTemplate("light", (_p("rect", 0.80, 0.02, 0.14, 0.12),)),
    )),
    ClassTemplate("robot", (  # 5 parts
        PartTemplate("torso", (_p("rect", 0.0, -0.02, 0.32, 0.36),)),
        PartTemplate("arms", (_p("rect", -0.50, -0.05, 0.11, 0.36),
                              _p("rect", 0.50, -0.05, 0.11, 0.36))),
        PartTemplate("legs", (_p("rect", -0.16, 0.66, 0.12, 0.32),
                              _p("rect", 0.16, 0.66, 0.12, 0.32))),
        PartTemplate("head", (_p("ellipse", 0.0, -0.58, 0.21, 0.20),)),
        PartTemplate("hat", (_p("triangle", 0.0, -0.90, 0.24, 0.13),)),
    )),
    ClassTemplate("mushroom", (  # 2 parts
        PartTemplate("stem", (_p("rect", 0.0, 0.35, 0.22, 0.55),)),
        PartTemplate("cap", (_p("ellipse", 0.0, -0.30, 0.90, 0.42),)),
    )),
)

_SHAPES = ("ellipse", "rect", "triangle")


def _random_template(c: int) -> ClassTemplate:
    """Layout for classes beyond the hand-designed ones, from a fixed (seed-independent) RNG."""
    rng = np.random.default_rng([7919, c])
    parts = []
    for j in range(2 + c % 4):
        prim = _p(
            _SHAPES[int(rng.integers(3))],
            float(rng.uniform(-0.55, 0.55)), float(rng.uniform(-0.55, 0.55)),
            float(rng.uniform(0.18, 0.45)), float(rng.uniform(0.18, 0.45)),
            float(rng.uniform(0, math.pi)),
        )
        parts.append(PartTemplate(f"part{j}", (prim,)))
    return ClassTemplate(f"shape{c}", tuple(parts))


@functools.lru_cache(maxsize=None)
def class_templates(num_classes: int) -> tuple[ClassTemplate, ...]:
    """The fixed templates of classes 0..num_classes-1 (independent of the data seed)."""
    return tuple(
        _HAND_TEMPLATES[c] if c < len(_HAND_TEMPLATES) else _random_template(c)
        for c in range(num_classes)
    )


def dataset_name(config: SyntheticConfig) -> str:
    """``synthetic-parts``, or ``synthetic-parts-texture<p>`` when objects carry their class's texture
    with probability p > 0 (so results of runs on a texture-cue dataset never pool with the others)."""
    return DATASET_NAME if config.texture_cue_prob == 0 else f"{DATASET_NAME}-texture{config.texture_cue_prob:g}"


def synthetic_config(meta: DatasetMetadata) -> SyntheticConfig | None:
    """The `SyntheticConfig` a prepared dataset was generated with; None if it is not a synthetic dataset."""
    if meta.info.get("generator") != GENERATOR:
        return None
    return SyntheticConfig(**meta.info["config"])


def rerender_test_sample(config: SyntheticConfig, index: int, label: int, texture: int) -> tuple[np.ndarray, np.ndarray]:
    """Test image `index` of the dataset of `config` drawn again with the object's texture forced
    to class `texture`: (RGB uint8, part mask). With the image's own texture it is the stored image."""
    rng = np.random.default_rng([config.seed, SPLITS.index("test"), index])
    image, mask, _ = render_sample(config, label, rng, texture=texture)
    return image, mask


def texture_cue_variant(root: str | os.PathLike, texture_cue_prob: float, workers: int = 1,
                        progress: bool = True) -> Path:
    """The synthetic dataset at `root` generated again with another ``texture_cue_prob``, beside it
    (``<root>-texture<p>``; `root` itself for its own value). Same layouts, poses and colours; only the
    objects' textures follow the cue. Idempotent like `generate_synthetic`."""
    root = Path(root)
    config = synthetic_config(load_metadata(root))
    if config is None:
        raise PreparedDatasetError(f"{root / METADATA_FILE}: not a built-in synthetic dataset; texture-cue variants "
                                   "are drawn by the built-in generator")
    if config.texture_cue_prob == texture_cue_prob:
        return root
    target = root.with_name(f"{root.name}-texture{texture_cue_prob:g}")
    generate_synthetic(target, SyntheticConfig(**{**asdict(config), "texture_cue_prob": texture_cue_prob}), workers, progress)
    return target


def synthetic_metadata(config: SyntheticConfig) -> DatasetMetadata:
    """Metadata (classes, class-specific part ids, info with the config) for `config`."""
    templates = class_templates(config.num_classes)
    parts: list[PartInfo] = []
    for t in templates:
        for part in t.parts:
            parts.append(PartInfo(id=len(parts) + 1, name=f"{t.name}/{part.name}", class_name=t.name))
    info: dict[str, Any] = {
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "config": _config_json(config),
        "own_class_parts_only": True,  # one object per image, painted with its own class's parts
    }
    return DatasetMetadata(name=dataset_name(config), classes=[t.name for t in templates], parts=parts, info=info)


def _config_json(config: SyntheticConfig) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(config)))


# --------------------------------------------------------------------------- drawing


def texture_params(k: int, num_classes: int, image_size: int) -> tuple[float, float]:
    """Stripe texture of class k: (orientation in radians, period in pixels)."""
    return math.pi * k / num_classes, image_size * (0.09 + 0.04 * (k % 3))


def _inside(p: Primitive, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of object-space points (u, v) inside primitive p."""
    du, dv = u - p.cx, v - p.cy
    if p.angle:
        c, s = math.cos(p.angle), math.sin(p.angle)
        du, dv = c * du + s * dv, -s * du + c * dv
    a, b = du / p.sx, dv / p.sy
    return _inside_unit(p.shape, a, b)


def _inside_unit(shape: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Inside test in the unit frame of a shape (half-sizes 1)."""
    if shape == "ellipse":
        return a * a + b * b <= 1.0
    if shape == "rect":
        return (np.abs(a) <= 1.0) & (np.abs(b) <= 1.0)
    if shape == "triangle":
        return (b <= 1.0) & (np.abs(a) <= (b + 1.0) * 0.5)
    raise ValueError(f"unknown primitive shape {shape!r}")


def _stripes(xs: np.ndarray, ys: np.ndarray, k: int, num_classes: int, size: int, phase: float) -> np.ndarray:
    """Stripe pattern in [0, 1] of texture k over the pixel grid."""
    angle, period = texture_params(k, num_classes, size)
    t = (xs * math.cos(angle) + ys * math.sin(angle)) * (2 * math.pi / period) + phase
    return 0.5 + 0.5 * np.sin(t)


def _upsample(coarse: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of a (g, g) grid to (size, size)."""
    g = coarse.shape[0]
    pos = np.linspace(0.0, g - 1.0, size, dtype=np.float32)
    i0 = np.minimum(pos.astype(np.int64), g - 2)
    f = pos - i0
    rows = coarse[i0] * (1 - f)[:, None] + coarse[i0 + 1] * f[:, None]
    return rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    return xs, ys


def render_sample(
    config: SyntheticConfig, label: int, rng: np.random.Generator, texture: int | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Draw one image of class `label`: (RGB uint8 (H,W,3), part mask (H,W), texture index).

    `texture` forces the object's stripe texture (a cue-conflict image: this shape, another
    class's texture); every random draw is the same, so the image differs from the unforced
    one only inside the object, and only when the texture index differs.
    """
    size, C = config.image_size, config.num_classes
    templates = class_templates(C)
    template = templates[label]
    first_id = 1 + sum(len(t.parts) for t in templates[:label])
    xs, ys = _grid(size)

    # background: two palette colours mixed by low-frequency noise
    bg_a, bg_b = rng.choice(len(PALETTE), size=2, replace=False)
    mix = _upsample(rng.random((5, 5), dtype=np.float32), size)[..., None]
    image = PALETTE[bg_a] * (1 - mix) + PALETTE[bg_b] * mix

    # unlabelled distractor shapes, same palette and textures as the objects
    for _ in range(int(rng.integers(*N_DISTRACTORS))):
        shape = _SHAPES[int(rng.integers(3))]
        cx, cy = rng.uniform(0, size, 2)
        hx, hy = rng.uniform(*DISTRACTOR_FRACTION, 2) * size
        ang = rng.uniform(-math.pi, math.pi)
        colour = PALETTE[int(rng.integers(len(PALETTE)))]
        tex, phase = int(rng.integers(C)), rng.uniform(0, 2 * math.pi)
        c, s = math.cos(ang), math.sin(ang)
        dx, dy = xs - cx, ys - cy
        inside = _inside_unit(shape, (c * dx + s * dy) / hx, (-s * dx + c * dy) / hy)
        pattern = _stripes(xs[inside], ys[inside], tex, C, size, phase)
        image[inside] = colour * (1 - STRIPE_CONTRAST * pattern)[:, None]

    # object pose
    diameter = rng.uniform(*OBJECT_FRACTION) * size
    log_aspect = rng.uniform(-ASPECT_JITTER, ASPECT_JITTER)
    ax, ay = math.exp(log_aspect), math.exp(-log_aspect)
    scale = diameter / (2 * template.radius * max(ax, ay))  # pixels per object unit
    reach = diameter / 2
    lo, hi = min(reach, size / 2), max(size - reach, size / 2)
    px, py = rng.uniform(lo, hi, 2)
    theta = rng.uniform(-MAX_ROTATION, MAX_ROTATION)
    mirror = -1.0 if rng.random() < 0.5 else 1.0

    # texture: class-specific with probability texture_cue_prob, else uniform over classes
    cue_draw, random_tex = rng.random(), int(rng.integers(C))
    drawn = label if cue_draw < config.texture_cue_prob else random_tex
    if texture is None:
        texture = drawn
    elif not 0 <= texture < C:
        raise ValueError(f"texture must be a class index in 0..{C - 1}, got {texture}")
    phase = rng.uniform(0, 2 * math.pi)
    excluded = {int(bg_a), int(bg_b)}
    choices = np.array([i for i in range(len(PALETTE)) if i not in excluded])
    colours = PALETTE[rng.choice(choices, size=len(template.parts), replace=False)]

    # inverse-transform the pixel grid into object space, then test each part
    c, s = math.cos(theta), math.sin(theta)
    dx, dy = xs - px, ys - py
    u = mirror * (c * dx + s * dy) / (scale * ax)
    v = (-s * dx + c * dy) / (scale * ay)
    pattern = _stripes(xs, ys, texture, C, size, phase)
    shade = (1 - STRIPE_CONTRAST * pattern)[..., None]
    mask = np.zeros((size, size), dtype=np.int32)
    for j, part in enumerate(template.parts):
        inside = np.zeros((size, size), dtype=bool)
        for prim in part.primitives:
            inside |= _inside(prim, u, v)
        mask[inside] = first_id + j
        image = np.where(inside[..., None], colours[j] * shade, image)

    image = image + rng.normal(0.0, PIXEL_NOISE, image.shape).astype(np.float32)
    image_u8 = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    return image_u8, mask, texture


def split_labels(config: SyntheticConfig, split_index: int, n: int) -> np.ndarray:
    """Balanced labels (counts differ by <= 1) in a seeded random order."""
    labels = np.arange(n) % config.num_classes
    return np.random.default_rng([config.seed, split_index]).permutation(labels)


# --------------------------------------------------------------------------- writing


def _stem(i: int) -> str:
    return f"{i:06d}"


def _work(args: tuple[str, dict[str, Any], int, int, list[int], int]) -> list[dict[str, Any]]:
    """Render and write images start..start+len(labels)-1 of one split (a worker's unit)."""
    root_str, config_dict, split_index, start, labels, num_parts = args
    root, config = Path(root_str), SyntheticConfig(**config_dict)
    split = SPLITS[split_index]
    rows = []
    for offset, label in enumerate(labels):
        i = start + offset
        rng = np.random.default_rng([config.seed, split_index, i])
        image, mask, texture = render_sample(config, label, rng)
        rel_image = f"images/{split}/{_stem(i)}.png"
        rel_mask = f"masks/{split}/{_stem(i)}.png"
        write_image(root / rel_image, image)
        write_mask(root / rel_mask, mask, num_parts)
        rows.append({"image": rel_image, "mask": rel_mask, "label": label, "texture": texture})
    return rows


_ALLOWED_ENTRIES = {"images", "masks"} | {f"{s}.csv" for s in SPLITS}


def _existing_dataset(root: Path, config: SyntheticConfig) -> DatasetMetadata | None:
    """Metadata of a complete dataset of `config` at root; None if root has no dataset yet."""
    if not (root / METADATA_FILE).exists():
        unexpected = sorted(
            e.name for e in root.iterdir() if e.name not in _ALLOWED_ENTRIES and not e.name.startswith(".")
        ) if root.is_dir() else []
        if unexpected:
            raise PreparedDatasetError(
                f"{root}: folder is not empty and is not a synthetic dataset (found {unexpected}); "
                "choose an empty or new folder"
            )
        return None  # empty, or an interrupted generation: (re)generate
    meta = load_metadata(root)
    info = meta.info
    wanted = {"generator": GENERATOR, "generator_version": GENERATOR_VERSION, "config": _config_json(config)}
    found = {k: info.get(k) for k in wanted}
    if found != wanted:
        raise PreparedDatasetError(
            f"{root / METADATA_FILE}: folder holds a dataset made with different settings "
            f"(found {found}, requested {wanted}); delete the folder or choose another root"
        )
    validate_prepared(root)
    for split, n in config.split_sizes().items():
        df = read_split(root, split)
        missing = [p for col in ("image", "mask") for p in df[col] if not (root / p).is_file()]
        if len(df) != n or missing:
            raise PreparedDatasetError(
                f"{split_path(root, split)}: dataset is incomplete ({len(df)} rows, expected {n}; "
                f"{len(missing)} missing files, e.g. {missing[:1]}); delete the folder to regenerate"
            )
    return meta


def generate_synthetic(
    root: str | os.PathLike,
    config: SyntheticConfig = SyntheticConfig(),
    workers: int = 1,
    progress: bool = True,
) -> DatasetMetadata:
    """Write the synthetic dataset of `config` under root in the prepared format.

    Idempotent: a complete dataset of the same config is returned untouched; one of a
    different config raises PreparedDatasetError. metadata.json is written last, so an
    interrupted run leaves no metadata.json and the next call regenerates everything.
    `workers > 1` renders in that many processes (the output does not depend on it).
    """
    config.check()
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    root = Path(root)
    existing = _existing_dataset(root, config)
    if existing is not None:
        return existing

    meta = synthetic_metadata(config)
    config_dict = asdict(config)
    jobs = []
    for split_index, split in enumerate(SPLITS):
        n = config.split_sizes()[split]
        labels = split_labels(config, split_index, n).tolist()
        for start in range(0, n, _CHUNK):
            jobs.append((str(root), config_dict, split_index, start, labels[start:start + _CHUNK], meta.num_parts))
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "masks" / split).mkdir(parents=True, exist_ok=True)

    rows: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(SPLITS))}
    chunks = run_jobs(_work, jobs, workers, desc=f"synthetic -> {root} (chunks of {_CHUNK})", progress=progress)
    for job, chunk in zip(jobs, chunks):
        rows[job[2]].extend(chunk)

    for split_index, split in enumerate(SPLITS):
        write_split(root, split, rows[split_index])
    write_metadata(root, meta)  # last: marks the dataset complete
    return meta


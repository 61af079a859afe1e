"""Shape vs texture: cue-conflict images whose shape is one class's and texture another's (paper Table 4).

Each test image keeps its object's shape (and its part mask, and its label: the shape label) and
gets the texture of another class, drawn at random per image (``texture_label``). Two sources:

* ``adain``: AdaIN style transfer (the Stylized-ImageNet procedure the paper used) with the style
  taken from a random test image of another class, not from a painting as in Stylized-ImageNet
  (stated in the rows' notes, `DEVIATIONS`); needs local encoder and decoder weight files
  (``eval.style_encoder``, ``eval.style_decoder``; never downloaded).
* ``builtin``: on the built-in synthetic data, the test image is drawn again with every random
  choice the same but the object's stripes forced to another class's texture. No weights needed,
  and the image differs from the original only inside the object.

Metrics: ``shape_vs_texture_accuracy`` (prediction = shape label, Table 4), the texture rate
(prediction = texture label) and the shape bias of Geirhos et al. (shape hits / (shape + texture
hits)).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ...core.fileio import CorruptCheckpointError, UnsafeCheckpointError
from ...data.prepared import PreparedDatasetError
from ...data.synthetic import SyntheticConfig, rerender_test_sample, synthetic_config
from .adain import DECODER_LAYOUT, ENCODER_LAYOUT, load_network, load_pair, stylize
from .base import Benchmark, BenchmarkSettings, Item, Source, accuracy_rows, item_rng, preprocess, sample_exists, write_sample

METRIC = "shape_vs_texture_accuracy"
SOURCES = ("builtin", "adain")
DEVIATIONS = {
    "adain": ("deviation: each style is a random test image of another class (its texture label), not a painting "
              "as in Stylized-ImageNet"),
    "builtin": "deviation: the built-in generator redraws the object with another class's stripes (no style transfer)",
}
"""Source -> how its images differ from the paper's Stylized-ImageNet cue conflicts (in every result row's note)."""


def other_class(label: int, num_classes: int, rng: np.random.Generator) -> int:
    """A class other than `label`, uniformly."""
    if num_classes < 2:
        raise ValueError("a cue conflict needs at least two classes")
    return int((label + 1 + rng.integers(num_classes - 1)) % num_classes)


def source_kind(source: Source, options: dict[str, Any]) -> str:
    """``adain`` when style weights are given, else ``builtin`` for the synthetic data; anything else is an error."""
    if options.get("style_encoder") or options.get("style_decoder"):
        if not (options.get("style_encoder") and options.get("style_decoder")):
            raise ValueError("eval.style_encoder and eval.style_decoder: give both AdaIN weight files, or neither")
        return "adain"
    if synthetic_config(source.metadata) is not None:
        return "builtin"
    raise PreparedDatasetError(
        f"{source.root}: the shape-vs-texture benchmark of a real dataset is made by AdaIN style transfer; set "
        "eval.style_encoder and eval.style_decoder to local vgg_normalised.pth and decoder.pth files")


class ShapeVsTexture(Benchmark):
    name = "shape_vs_texture"
    description = "cue conflict: each test object's shape with another class's texture"

    def check_options(self, options: dict[str, Any]) -> None:
        """Loads the AdaIN files (safely, cached) before any training: a missing, unsafe, damaged or
        misshapen file is refused naming its key and the file."""
        for key, layout in (("style_encoder", ENCODER_LAYOUT), ("style_decoder", DECODER_LAYOUT)):
            if options.get(key):
                try:
                    load_network(options[key], layout)
                except (OSError, KeyError, ValueError, UnsafeCheckpointError, CorruptCheckpointError) as err:
                    raise ValueError(f"eval.{key}: {err.args[-1] if isinstance(err, (OSError, KeyError)) else err}") from None

    def check(self, source: Source, settings: BenchmarkSettings) -> None:
        self.check_options(settings.options)
        source_kind(source, settings.options)

    def jobs(self, source: Source, settings: BenchmarkSettings, dst: Path) -> list[Any]:
        kind = source_kind(source, settings.options)
        labels = source.rows["label"].to_numpy()
        classes = source.metadata.num_classes
        jobs = []
        for i in range(len(labels)):
            rng = item_rng(settings.seed, i)
            texture = other_class(int(labels[i]), classes, rng)
            if kind == "builtin":
                style: Any = synthetic_config(source.metadata)
            else:
                candidates = np.flatnonzero(labels == texture)
                if not len(candidates):
                    candidates = np.flatnonzero(labels != labels[i])  # the drawn class has no test image
                    texture = int(labels[candidates[0]])
                    candidates = np.flatnonzero(labels == texture)
                style = source.item(int(rng.choice(candidates)))
            jobs.append((kind, source.item(i), texture, style, settings, dst))
        return jobs

    @staticmethod
    def work(job: Any) -> list[dict[str, Any]]:
        kind, item, texture, style, settings, dst = job
        stem = f"{item.index:06d}"
        if not sample_exists(dst, stem):
            image, mask = _builtin(item, texture, style, settings) if kind == "builtin" else _adain(item, style, settings)
            write_sample(dst, stem, image, mask, item.num_parts)
        row = {"image": f"images/{stem}.png", "mask": f"masks/{stem}.png", "label": item.label, "texture_label": texture,
               "source_index": item.index, "method": kind}
        if kind == "adain":
            row["style_index"] = style.index
        return [row]

    def score(self, rows: pd.DataFrame, pred: np.ndarray) -> list[dict[str, Any]]:
        shape = pred == rows["label"].to_numpy()
        texture = pred == rows["texture_label"].to_numpy()
        method = rows["method"].iloc[0]
        note = f"{method} cue conflict, {len(rows)} test images; {DEVIATIONS[method]}"
        out = accuracy_rows(rows, shape, METRIC, note=note)
        out += accuracy_rows(rows, texture, "shape_vs_texture_texture_rate", note=note)
        decided = int(shape.sum() + texture.sum())
        if decided:
            out.append({"metric": "shape_vs_texture_shape_bias", "value": 100.0 * float(shape.sum()) / decided, "n": decided,
                        "note": note + "; shape hits / (shape + texture hits)"})
        return out


def _builtin(item: Item, texture: int, config: SyntheticConfig, settings: BenchmarkSettings) -> tuple[np.ndarray, np.ndarray]:
    index = int(Path(item.image).stem)  # the synthetic generator names test image i "<i>.png" and draws it from (seed, test, i)
    image, mask = rerender_test_sample(config, index, item.label, texture)
    return preprocess(image, mask, settings.resize_size, settings.crop_size)


def _adain(item: Item, style: Item, settings: BenchmarkSettings) -> tuple[np.ndarray, np.ndarray]:
    encoder, decoder = load_pair(str(settings.options["style_encoder"]), str(settings.options["style_decoder"]))
    content, mask = item.load(settings)
    style_image, _ = style.load(settings)
    as_tensor = lambda a: torch.from_numpy(a.transpose(2, 0, 1).copy()).float().div(255)[None]  # noqa: E731
    out = stylize(as_tensor(content), as_tensor(style_image), encoder, decoder, float(settings.options.get("style_alpha", 1.0)))
    return (out[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), mask

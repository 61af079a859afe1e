"""Non-adversarial benchmarks: corruptions, mixed-rand backgrounds, cue conflicts, AdaIN, scoring, statistics."""
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
from scipy import stats

from partrobust.eval.benchmarks import BenchmarkSettings, benchmark_rows, build_benchmark, check_benchmarks, prepare_benchmark, score_benchmark
from partrobust.eval.benchmarks.adain import DECODER_LAYOUT, ENCODER_LAYOUT, adaptive_instance_norm, load_pair, stylize
from partrobust.eval.benchmarks.base import preprocess
from partrobust.eval.benchmarks.corruptions import CORRUPTIONS, corrupt_image
from partrobust.eval.benchmarks.cue_conflict import other_class
from partrobust.eval.benchmarks.spurious import fill_object, mixed_rand
from partrobust.core.config import ParameterError
from partrobust.data import SyntheticConfig
from partrobust.data.prepared import read_image, read_mask, read_split
from partrobust.data.synthetic import render_sample, rerender_test_sample
from partrobust.report.robustness import benchmark_table
from partrobust.report.stats import t_test
from partrobust.runs.runconfig import identity, make_run_config

from conftest import tiny_run_values


def _settings(**options) -> BenchmarkSettings:
    return BenchmarkSettings(resize_size=32, crop_size=32, limit=12, seed=0, options=options)


@pytest.fixture(scope="module")
def natural_image() -> np.ndarray:
    """A 64 px built-in image: an object with edges and texture on a smooth background."""
    image, _, _ = render_sample(SyntheticConfig(num_classes=4, image_size=64), 1, np.random.default_rng(3))
    return image


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_each_corruption_changes_the_image_keeps_shape_and_dtype_and_grows_with_severity(corruption, natural_image):
    mild = corrupt_image(natural_image, corruption, 1, seed=0)
    harsh = corrupt_image(natural_image, corruption, 5, seed=0)
    for out in (mild, harsh):
        assert out.shape == natural_image.shape and out.dtype == np.uint8
        assert not np.array_equal(out, natural_image)
    distance = lambda a: np.abs(a.astype(float) - natural_image).mean()  # noqa: E731
    assert distance(mild) < distance(harsh)
    assert np.array_equal(corrupt_image(natural_image, corruption, 3, seed=7), corrupt_image(natural_image, corruption, 3, seed=7))


def test_unknown_corruption_or_severity_is_refused(natural_image):
    with pytest.raises(ValueError, match="unknown corruption 'rain'"):
        corrupt_image(natural_image, "rain", 1, 0)
    with pytest.raises(ValueError, match="severity"):
        corrupt_image(natural_image, "fog", 6, 0)


def test_corruption_benchmark_keeps_masks_and_labels_and_is_reused(tiny_dataset):
    settings = _settings(corruptions=["fog", "gaussian_noise"], severities=[1, 5])
    folder = prepare_benchmark("common_corruption", tiny_dataset, settings, workers=2, progress=False)
    rows = benchmark_rows(folder)
    source = read_split(tiny_dataset, "test").iloc[:12]
    assert len(rows) == 12 * 2 * 2
    assert set(rows.corruption) == {"fog", "gaussian_noise"} and set(rows.severity) == {1, 5}
    for row in rows.sample(6, random_state=0).itertuples():
        original = source.iloc[row.source_index]
        assert row.label == original.label
        assert np.array_equal(read_mask(folder / row.mask), read_mask(tiny_dataset / original["mask"]))
        assert read_image(folder / row.image).shape == (32, 32, 3)
    stamp = (folder / "benchmark.json").stat().st_mtime_ns
    assert prepare_benchmark("common_corruption", tiny_dataset, settings, progress=False) == folder
    assert (folder / "benchmark.json").stat().st_mtime_ns == stamp, "a complete benchmark is reused untouched"
    other = prepare_benchmark("common_corruption", tiny_dataset, _settings(corruptions=["fog"], severities=[1]), progress=False)
    assert other != folder, "other settings, other folder"


def test_preprocess_gives_the_test_loader_image():
    from partrobust.data.transforms import eval_transform
    from torchvision import tv_tensors

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    mask = rng.integers(0, 4, (40, 50)).astype(np.uint8)
    ours, our_mask = preprocess(image, mask, 36, 32)
    x, m = eval_transform(36, 32)(tv_tensors.Image(torch.from_numpy(image.transpose(2, 0, 1).copy())), tv_tensors.Mask(torch.from_numpy(mask)))
    assert torch.equal(torch.from_numpy(ours.transpose(2, 0, 1)), (x * 255).round().to(torch.uint8))
    assert torch.allclose(torch.from_numpy(ours.transpose(2, 0, 1)).float() / 255, x, atol=1e-6)
    assert np.array_equal(our_mask, m.numpy())


def test_fill_object_takes_each_pixel_from_the_nearest_background_pixel():
    image = np.arange(5 * 5 * 3, dtype=np.uint8).reshape(5, 5, 3)
    obj = np.zeros((5, 5), bool)
    obj[1:3, 1:3] = True
    out = fill_object(image, obj)
    assert np.array_equal(out[~obj], image[~obj])
    assert np.array_equal(out[1, 1], image[0, 1]) or np.array_equal(out[1, 1], image[1, 0])  # both at distance 1
    with pytest.raises(ValueError, match="whole image"):
        fill_object(image, np.ones((5, 5), bool))


def test_mixed_rand_leaves_no_pixel_of_the_background_object():
    rng = np.random.default_rng(1)
    fg, bg = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    fg_mask = np.zeros((16, 16), np.uint8)
    fg_mask[4:8, 4:8] = 3
    bg_mask = np.zeros((16, 16), np.uint8)
    bg_mask[6:14, 6:14] = 5
    out = mixed_rand(fg, fg_mask, bg, bg_mask)
    inside = fg_mask > 0
    assert np.array_equal(out[inside], fg[inside])
    background_colours = {tuple(c) for c in bg[bg_mask == 0]}
    assert all(tuple(c) in background_colours for c in out[~inside])


def test_spurious_benchmark_pastes_on_another_class_and_keeps_nothing_of_its_object(tiny_dataset):
    folder = prepare_benchmark("spurious_correlation", tiny_dataset, _settings(), progress=False)
    rows = benchmark_rows(folder)
    source = read_split(tiny_dataset, "test")
    assert len(rows) == 12 and (rows.label != rows.background_label).all()
    for row in rows.itertuples():
        fg, bg = source.iloc[row.source_index], source.iloc[row.background_index]
        assert row.label == fg.label and row.background_label == bg.label
        out, mask = read_image(folder / row.image), read_mask(folder / row.mask)
        fg_mask, bg_mask = read_mask(tiny_dataset / fg["mask"]), read_mask(tiny_dataset / bg["mask"])
        bg_image = read_image(tiny_dataset / bg["image"])
        assert np.array_equal(mask, fg_mask)
        assert np.array_equal(out[fg_mask > 0], read_image(tiny_dataset / fg["image"])[fg_mask > 0])
        background_colours = {tuple(c) for c in bg_image[bg_mask == 0]}
        assert all(tuple(c) in background_colours for c in out[fg_mask == 0]), "no object pixel of the other class is left"


def test_other_class_is_uniform_over_the_other_classes():
    rng = np.random.default_rng(0)
    draws = [other_class(2, 5, rng) for _ in range(2000)]
    assert 2 not in draws and set(draws) == {0, 1, 3, 4}
    assert max(np.bincount(draws, minlength=5)[[0, 1, 3, 4]]) < 600


def test_cue_conflict_redraws_the_object_with_another_class_texture(tiny_dataset):
    folder = prepare_benchmark("shape_vs_texture", tiny_dataset, _settings(), progress=False)
    rows = benchmark_rows(folder)
    source = read_split(tiny_dataset, "test")
    config = SyntheticConfig(**json.loads((tiny_dataset / "metadata.json").read_text())["info"]["config"])
    assert (rows.label != rows.texture_label).all() and (rows.method == "builtin").all()
    for row in rows.itertuples():
        original = source.iloc[row.source_index]
        same, _ = rerender_test_sample(config, row.source_index, int(original.label), int(original.texture))
        stored = read_image(tiny_dataset / original["image"])
        assert np.array_equal(same, stored), "drawing again with the image's own texture gives the stored image"
        out, mask = read_image(folder / row.image), read_mask(folder / row.mask)
        assert np.array_equal(mask, read_mask(tiny_dataset / original["mask"]))
        assert np.array_equal(out[mask == 0], stored[mask == 0]), "only the object changes"
        if row.texture_label != original.texture:
            assert not np.array_equal(out[mask > 0], stored[mask > 0])


def test_shape_vs_texture_of_a_real_dataset_needs_adain_weights_before_any_training(tiny_dataset, tmp_path):
    real = tmp_path / "real"
    shutil.copytree(tiny_dataset, real)
    meta = json.loads((real / "metadata.json").read_text())
    meta["info"] = {"generator": "some converter"}
    (real / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="style_encoder"):
        check_benchmarks(["shape_vs_texture"], real, _settings())
    config = make_run_config(tiny_run_values(real), {"eval.benchmarks": ["shape_vs_texture"], "data.scan": False})
    from partrobust.runs.run import Run

    with pytest.raises(ParameterError, match="style_encoder"):
        Run(config, "x", tmp_path / "runs")
    with pytest.raises(ParameterError, match="does not exist"):
        Run(make_run_config(tiny_run_values(real), {"eval.benchmarks": ["shape_vs_texture"], "data.scan": False,
                                                     "eval.style_encoder": "nope.pth", "eval.style_decoder": "nope2.pth"}),
            "x", tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def _tiny_adain_weights(folder, widths=(3, 4, 6, 8, 10)):
    """Random weight files in the layout of vgg_normalised.pth / decoder.pth, at tiny widths."""
    torch.manual_seed(0)
    c0, c1, c2, c3, c4 = widths  # 3 (colour conv), then relu1_1, relu2_1, relu3_1, relu4_1 widths
    enc_channels = iter([(3, c0, 1), (c0, c1, 3), (c1, c1, 3), (c1, c2, 3), (c2, c2, 3), (c2, c3, 3), (c3, c3, 3), (c3, c3, 3),
                         (c3, c3, 3), (c3, c4, 3)])
    dec_channels = iter([(c4, c3, 3), (c3, c3, 3), (c3, c3, 3), (c3, c3, 3), (c3, c2, 3), (c2, c2, 3), (c2, c1, 3), (c1, c1, 3),
                         (c1, 3, 3)])
    paths = []
    for layout, channels, name in ((ENCODER_LAYOUT, enc_channels, "enc.pth"), (DECODER_LAYOUT, dec_channels, "dec.pth")):
        layers = [nn.Conv2d(*next(channels)) if t == "c" else nn.Identity() for t in layout]
        torch.save(nn.Sequential(*layers).state_dict(), folder / name)
        paths.append(folder / name)
    return paths


def test_adaptive_instance_norm_gives_the_style_statistics():
    content, style = torch.randn(2, 4, 5, 5), torch.randn(2, 4, 6, 6) * 3 + 2
    out = adaptive_instance_norm(content, style)
    assert torch.allclose(out.flatten(2).mean(-1), style.flatten(2).mean(-1), atol=1e-5)
    assert torch.allclose(out.flatten(2).std(-1), style.flatten(2).std(-1), rtol=1e-3)


def test_adain_loads_weight_files_of_any_width_and_stylizes(tmp_path):
    encoder_path, decoder_path = _tiny_adain_weights(tmp_path)
    encoder, decoder = load_pair(str(encoder_path), str(decoder_path))
    content, style = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    out = stylize(content, style, encoder, decoder, alpha=1.0)
    assert out.shape == content.shape and 0 <= out.min() and out.max() <= 1
    assert not torch.equal(out, stylize(content, style, encoder, decoder, alpha=0.0))
    assert torch.equal(out, stylize(content, style, encoder, decoder, alpha=1.0))
    with pytest.raises(KeyError, match="layout"):
        torch.save({"0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
        load_pair(str(tmp_path / "bad.pth"), str(decoder_path))


def test_adain_cue_conflict_takes_the_style_from_another_class(tiny_dataset, tmp_path):
    encoder, decoder = _tiny_adain_weights(tmp_path)
    settings = _settings(style_encoder=str(encoder), style_decoder=str(decoder), style_alpha=1.0)
    folder = prepare_benchmark("shape_vs_texture", tiny_dataset, settings, progress=False)
    rows = benchmark_rows(folder)
    labels = read_split(tiny_dataset, "test")["label"]
    assert (rows.method == "adain").all() and (rows.label != rows.texture_label).all()
    assert (labels.iloc[rows.style_index].to_numpy() == rows.texture_label.to_numpy()).all()


def test_scores_count_the_right_label():
    rows = pd.DataFrame({"label": [0, 1, 2, 0], "texture_label": [1, 2, 0, 2], "method": "builtin"})
    out = {r["metric"]: r["value"] for r in build_benchmark("shape_vs_texture").score(rows, np.array([0, 2, 1, 0]))}
    assert out["shape_vs_texture_accuracy"] == 50.0 and out["shape_vs_texture_texture_rate"] == 25.0
    assert out["shape_vs_texture_shape_bias"] == pytest.approx(100 * 2 / 3)
    rows = pd.DataFrame({"label": [0, 0, 1, 1], "corruption": ["fog", "fog", "snow", "snow"], "severity": [1, 2, 1, 2],
                         "source_index": [0, 0, 1, 1]})
    out = {r["metric"]: r["value"] for r in build_benchmark("common_corruption").score(rows, np.array([0, 1, 1, 1]))}
    assert out["common_corruption_accuracy"] == 75.0
    assert out["common_corruption_fog_accuracy"] == 50.0 and out["common_corruption_snow_accuracy"] == 100.0
    assert out["common_corruption_severity2_accuracy"] == 50.0 and out["common_corruption_fog_severity2_accuracy"] == 0.0


def test_score_benchmark_refuses_a_wrong_number_of_predictions(tiny_dataset):
    folder = prepare_benchmark("spurious_correlation", tiny_dataset, _settings(), progress=False)
    with pytest.raises(ValueError, match="12 images but 3 predictions"):
        score_benchmark("spurious_correlation", folder, np.zeros(3, int))


def test_t_test_matches_the_formula_and_scipy():
    a, b = [1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0]
    t, p = t_test(a, b)
    assert t == pytest.approx(-2.0 / math.sqrt(2 * (5 / 3) / 4))  # means 2.5 vs 4.5, variances 5/3
    assert p == pytest.approx(2 * stats.t.sf(abs(t), df=6))  # equal variances and sizes: Welch's df = 6
    assert (t, p) == pytest.approx(tuple(stats.ttest_ind(a, b, equal_var=False)))
    assert math.isnan(t_test([1.0], b)[1]) and math.isnan(t_test([1.0, 1.0], [1.0, 1.0])[1])


def test_benchmark_table_means_cis_and_p_values():
    values = {"resnet": [60.0, 62.0, 61.0], "downsampled": [66.0, 65.0, 68.0]}
    rows = [{"run_id": f"{m}-{s}", "model": m, "dataset": "d", "seed": s, "metric": "shape_vs_texture_accuracy", "value": v,
             "drop_background": None if m == "resnet" else False}
            for m, vs in values.items() for s, v in enumerate(vs)]
    table = benchmark_table(pd.DataFrame(rows), metrics=["shape_vs_texture_accuracy"]).set_index("model")
    assert table.loc["resnet", "mean"] == pytest.approx(61.0) and math.isnan(table.loc["resnet", "p_value"])
    half = stats.t.ppf(0.975, 2) * np.std(values["downsampled"], ddof=1) / math.sqrt(3)
    assert table.loc["downsampled", "half_width"] == pytest.approx(half)
    assert table.loc["downsampled", "p_value"] == pytest.approx(stats.ttest_ind(values["downsampled"], values["resnet"], equal_var=False).pvalue)
    assert table.loc["downsampled", "difference"] == pytest.approx(5.333333, rel=1e-5)


def test_benchmark_keys_leave_earlier_run_ids_alone_and_are_checked(tiny_dataset):
    plain = make_run_config(tiny_run_values(tiny_dataset))
    assert not any(k.startswith(("eval.bench", "eval.corrupt", "eval.style", "eval.imagenet9")) or k == "eval.pgd" for k in identity(plain))
    with_benchmarks = make_run_config(tiny_run_values(tiny_dataset), {"eval.benchmarks": ["common_corruption"]})
    assert {"eval.benchmarks", "eval.corruptions", "eval.corruption_severities", "eval.benchmark_seed"} <= set(identity(with_benchmarks))
    assert "eval.style_alpha" not in identity(with_benchmarks)
    no_pgd = make_run_config(tiny_run_values(tiny_dataset), {"eval.pgd": False})
    assert "eval.pgd_steps" not in identity(no_pgd)
    with pytest.raises(ParameterError, match="eval.corruptions.*unknown corruption"):
        make_run_config(tiny_run_values(tiny_dataset), {"eval.corruptions": ["rain"]})
    with pytest.raises(ParameterError, match="eval.benchmarks"):
        make_run_config(tiny_run_values(tiny_dataset), {"eval.benchmarks": ["imagenet_a"]})


def test_hparam_sets_pick_a_by_shape_vs_texture_and_b_by_spurious_plus_corruption():
    from partrobust.core.results import RESULT_COLUMNS
    from partrobust.report.robustness import hparam_sets

    scores = {0.1: (70.0, 50.0, 80.0), 0.05: (60.0, 60.0, 85.0)}  # lr -> shape vs texture, spurious, corruptions
    rows = []
    for lr, values in scores.items():
        for seed in (0, 1):
            for metric, value in zip(("shape_vs_texture_accuracy", "spurious_correlation_accuracy", "common_corruption_accuracy"), values):
                rows.append({**dict.fromkeys(RESULT_COLUMNS), "experiment": "e", "run_id": f"resnet-{lr}-{seed}", "dataset": "d",
                             "training": "normal", "model": "resnet", "lr": lr, "seed": seed, "metric": metric,
                             "value": value + seed, "n": 10})
    table = hparam_sets(pd.DataFrame(rows)).set_index("set")
    assert table.loc["A", "lr"] == 0.1 and table.loc["A", "shape vs texture"] == 70.5
    assert table.loc["B", "lr"] == 0.05 and table.loc["B", "corruptions"] == 85.5


def test_benchmark_rows_state_how_they_differ_from_the_papers():
    """Every result row of a benchmark made differently from the paper's says how, in its note."""
    from partrobust.eval.benchmarks.spurious import ImageNet9MixedRand, SpuriousCorrelation

    rows = pd.DataFrame({"label": [0, 1], "background_label": [1, 0]})
    for benchmark, phrases in [(SpuriousCorrelation(), ["ground-truth part masks", "nearest non-object pixels", "Only-BG-T"]),
                               (ImageNet9MixedRand(), ["Part-ImageNet", "about 220 ImageNet wnids", "Fish, Bird, Reptile and Quadruped"])]:
        out = benchmark.score(rows, np.array([0, 0]))
        assert out and all("deviation: " in r["note"] and all(p in r["note"] for p in phrases) for r in out), out
    for method, phrase in [("adain", "not a painting as in Stylized-ImageNet"),
                           ("builtin", "no style transfer")]:
        cue = pd.DataFrame({"label": [0, 1], "texture_label": [1, 0], "method": method})
        out = build_benchmark("shape_vs_texture").score(cue, np.array([0, 0]))
        assert len(out) == 3 and all(phrase in r["note"] for r in out), out

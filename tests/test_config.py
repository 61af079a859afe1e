"""Parameter validation and run identity: errors name the dotted key; the id follows the config."""
import pytest

from partrobust.core.config import ParameterError, Section, apply_overrides, diff_flat, format_fraction, from_namespace, parse_assignment, parse_fraction, validate
from partrobust.core.results import RESULT_INDEX
from partrobust.runs.runconfig import RUNTIME_KEYS, RunConfig, describe_keys, identity, inapplicable_keys, make_run_config, run_id


class Demo(Section):
    lr: float
    epochs: int
    models: list[str]
    path: str | None = None


BASE = {"data": {"root": "data/prepared/x"}, "model": {"from_scratch": True}}  # unit tests build no model


def config(**overrides) -> RunConfig:
    return make_run_config(BASE, {k.replace("__", "."): v for k, v in overrides.items()})


def test_parse_fraction():
    assert parse_fraction("8/255") == pytest.approx(8 / 255)
    assert parse_fraction(0.5) == 0.5
    assert parse_fraction(1) == 1.0
    for bad in ("eight", True, None, "1/0"):
        with pytest.raises(ParameterError, match="eps"):
            parse_fraction(bad, "eps")
    assert format_fraction(8 / 255) == "8/255" and format_fraction(0.001) == 0.001


def test_validate_accepts_valid_values():
    d = validate(Demo, {"lr": 1, "epochs": 3, "models": ["a", "b"]})
    assert d.lr == 1 and d.models == ["a", "b"] and d.path is None


@pytest.mark.parametrize(
    "values, key",
    [
        ({"lr": 0.1, "epochs": 3, "models": [], "epohcs": 2}, "epohcs: unknown key"),
        ({"lr": "fast", "epochs": 3, "models": []}, "lr"),
        ({"lr": 0.1, "epochs": 3.5, "models": []}, "epochs"),
        ({"lr": 0.1, "epochs": True, "models": []}, "epochs"),
        ({"lr": 0.1, "epochs": 3, "models": "resnet"}, "models"),
        ({"lr": 0.1, "epochs": 3, "models": [1]}, "models"),
        ({"lr": 0.1, "epochs": 3}, "models: required"),
    ],
)
def test_validate_rejects_bad_values(values, key):
    with pytest.raises(ParameterError, match=key):
        validate(Demo, values)


def test_from_namespace_ignores_modules_functions_and_private_names():
    import math

    ns = {"lr": 0.1, "epochs": 2, "models": ["x"], "math": math, "print_it": print, "_hidden": 1, "In": [], "Demo": Demo}
    assert from_namespace(Demo, ns).epochs == 2
    ns["typo_name"] = 5
    with pytest.raises(ParameterError, match="typo_name"):
        from_namespace(Demo, ns)



def test_from_namespace_in_a_kernel_reads_the_last_parameters_cell_and_papermills():
    """In a kernel (an ``In`` history) only the names the last run parameters cell and papermill's injected cell
    assign count: later cells' globals do not (a second pass works), a misspelt name in either cell is refused."""
    own = "# Parameters (papermill overrides these)\nlr = 0.1\nepochs = 2\nmodels = ['x']\n"
    ns = {"lr": 0.1, "epochs": 2, "models": ["x"], "params": object.__new__(Demo), "out": 3, "Demo": Demo}
    ns["In"] = ["", "import math", own, "params = from_namespace(Demo, globals())"]
    assert from_namespace(Demo, ns).epochs == 2, "params and out (later cells' globals) are not parameters"
    ns["epochs"] = 5  # edited and rerun: the value is the namespace's
    ns["In"] += ["x = 1", own.replace("epochs = 2", "epochs = 5"), "params = from_namespace(Demo, globals())"]
    assert from_namespace(Demo, ns).epochs == 5
    ns["In"] += ["# Parameters\nepohcs = 3\n", "params = from_namespace(Demo, globals())"]  # papermill's injected cell
    ns["epohcs"] = 3
    with pytest.raises(ParameterError, match="epohcs"):
        from_namespace(Demo, ns)
    ns["In"] += [own + "lr_typo = 1\n", "params = from_namespace(Demo, globals())"]
    ns["lr_typo"] = 1
    with pytest.raises(ParameterError, match="lr_typo"):
        from_namespace(Demo, ns)
    ns["In"] += [own, "params = from_namespace(Demo, globals())"]  # the typo fixed: the stale global is ignored
    assert from_namespace(Demo, ns).lr == 0.1
    with pytest.raises(ParameterError, match="run the parameters cell"):
        from_namespace(Demo, {**ns, "In": ["", "import math"]})

# The table of bad run-config values and the words their errors must say is in test_reliability.py.


def test_run_config_requires_the_dataset_and_applies_overrides():
    with pytest.raises(ParameterError, match=r"data: required"):
        make_run_config({}, {})
    with pytest.raises(ParameterError, match=r"data\.root: required but missing"):
        make_run_config({"data": {"crop_size": 32}}, {})
    c = config(train__beta=2.0, model__pool_size=8, train__eps="4/255")
    assert c.train.beta == 2.0 and c.model.pool_size == 8 and c.train.eps == pytest.approx(4 / 255)
    assert apply_overrides({"a": {"b": 1}}, {"a.c": 2}) == {"a": {"b": 1, "c": 2}}
    assert parse_assignment("train.beta=2.0") == ("train.beta", 2.0)
    assert parse_assignment("eval.autoattack_attacks=[apgd-ce, apgd-t]") == ("eval.autoattack_attacks", ["apgd-ce", "apgd-t"])
    with pytest.raises(ParameterError, match="KEY=VALUE"):
        parse_assignment("train.beta")


def test_every_library_option_is_a_config_key():
    keys = {row["key"] for row in describe_keys()}
    for key in ("data.label_fraction", "data.labels", "model.drop_background", "model.concat_input", "model.bbox_score",
                "model.pool_size", "model.output_stride", "train.c_seg", "train.beta", "train.step_size", "eval.pgd_restarts",
                "eval.autoattack_attacks", "seed"):
        assert key in keys
    assert all(row["description"] for row in describe_keys()), "every key is documented"
    assert set(RESULT_INDEX.values()) <= keys


def test_run_id_is_readable_and_follows_the_config():
    trades = config(model__name="bbox", train__method="trades", train__beta=2.0)
    assert run_id(trades).startswith("bbox-trades-b2-") and len(run_id(trades).rsplit("-", 1)[1]) == 8
    assert run_id(config(model__name="resnet")).startswith("resnet-pgd-")
    assert run_id(config(train__epochs_adv=0)).startswith("downsampled-normal-")
    assert run_id(trades) != run_id(config(model__name="bbox", train__method="trades", train__beta=1.0))
    assert run_id(config(seed=0)) != run_id(config(seed=1))
    # runtime keys never change the id
    assert run_id(trades) == run_id(config(model__name="bbox", train__method="trades", train__beta=2.0, device="cpu",
                                           progress=False, data__num_workers=4, train__log_every=5))
    assert RUNTIME_KEYS.isdisjoint(identity(trades))


def test_inapplicable_keys_do_not_change_the_run():
    # TRADES beta of a PGD run, c_seg and part options of the ResNet, the pool size of a Bounding-Box model
    assert run_id(config(train__beta=5.0)) == run_id(config(train__beta=0.1))
    assert run_id(config(model__name="resnet", train__c_seg=0.1, model__encoder="x")) == run_id(config(model__name="resnet"))
    assert run_id(config(model__name="bbox", model__pool_size=8)) == run_id(config(model__name="bbox"))
    assert run_id(config(model__pool_size=8)) != run_id(config(model__pool_size=4)), "the Downsampled head reads pool_size"
    assert "model.arch" in inapplicable_keys(config()) and "model.arch" not in inapplicable_keys(config(model__name="resnet"))


def test_diff_names_changed_keys():
    assert diff_flat({"train.lr": 0.1, "seed": 0}, {"train.lr": 0.05, "seed": 0, "x": 1}) == ["train.lr: 0.1 -> 0.05", "x: (absent) -> 1"]


def test_readme_documents_every_run_config_key():
    """Adding a parameter = its declaration + its row in params/README.md (printed by python -m partrobust.runconfig)."""
    from pathlib import Path

    from partrobust.runs.runconfig import keys_markdown

    page = (Path(__file__).resolve().parents[1] / "params" / "README.md").read_text()
    assert keys_markdown() in page, "params/README.md's key table is stale: paste `python -m partrobust.runconfig` into it"

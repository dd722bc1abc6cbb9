"""harness.config.space: search-space files -> validated axes -> Optuna distributions, before any model loads."""

from __future__ import annotations

import textwrap
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from harness.trial.models import ModelDims, check_rank_fits
from harness.config.space import load_space, parse_space, suggest
from harness.config.errors import SpecError
from harness.config.model import QUANTIZATION_MODES
from harness.config.sweep import SweepSpec
from harness.search.sweep import trial_config

SPACES = Path(__file__).resolve().parents[2] / "search_spaces"
SPACE_FILES = sorted(SPACES.glob("*.y*ml"))
RECORDED = {"lora_r", "lora_alpha", "learning_rate", "quantization", "lora_dropout", "target_modules"}

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _axes(tmp_path: Path, axes: str) -> Path:
    """A space file whose `axes:` block is the given YAML lines."""
    return _write(tmp_path, "axes:\n" + textwrap.indent(textwrap.dedent(axes), "  "))


def _refuses(path: Path, *names: str) -> str:
    with pytest.raises(SpecError) as info:
        load_space(path)
    message = str(info.value)
    assert "\n" not in message, message
    assert str(path) in message, message
    for name in names:
        assert name in message, f"{name!r} not in {message!r}"
    return message


def _study() -> optuna.Study:
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))


# --- every shipped file -------------------------------------------------------------------------


def test_search_spaces_folder_is_not_empty() -> None:
    assert {p.stem for p in SPACE_FILES} >= {"default", "lora_vs_qlora", "tiny"}


@pytest.mark.parametrize("path", SPACE_FILES, ids=lambda p: p.name)
def test_every_shipped_space_parses_and_samples(path: Path) -> None:
    space = load_space(path)
    assert space.description.strip() != ""
    assert set(space.axes) | {"lora_alpha"} >= RECORDED
    for axis in space.axes.values():
        axis.distribution()  # Optuna validates its own distributions
    study = _study()
    for _ in range(6):
        trial = study.ask()
        params = suggest(trial, space)
        assert RECORDED <= set(params) <= set(space.axes) | {"lora_alpha"}
        assert set(trial.params) >= set(params)
        # Every sampled point must build the config a trial is made of.
        trial_config(SweepSpec(), params)
        study.tell(trial, 1.0)


def test_tiny_space_fits_tiny_llama() -> None:
    space = load_space(SPACES / "tiny.yaml")
    check_rank_fits(space, ModelDims(hidden=64, kv=32, intermediate=128), "tiny-llama")
    assert space.axes["lora_r"].values() == [4, 8, 12, 16]


def test_tiny_space_grid_refuses_the_log_range() -> None:
    path = SPACES / "tiny.yaml"
    with pytest.raises(SpecError) as info:
        load_space(path).grid()
    assert "learning_rate" in str(info.value)
    assert str(path) in str(info.value)


def test_grid_of_a_discrete_space(tmp_path: Path) -> None:
    path = _axes(tmp_path, """\
        lora_r: {choices: [8, 16]}
        lora_alpha: {ratio: {choices: [1, 2]}}
        learning_rate: {low: 1.0e-4, high: 3.0e-4, step: 1.0e-4}
        quantization: {choices: [none, nf4]}
        """)
    grid = load_space(path).grid()
    assert grid["lora_r"] == [8, 16]
    assert grid["lora_alpha_ratio"] == [1.0, 2.0]
    assert grid["learning_rate"] == pytest.approx([1e-4, 2e-4, 3e-4])
    assert grid["quantization"] == ["none", "nf4"]
    assert grid["lora_dropout"] == [0.0]
    assert grid["target_modules"] == ["all-linear"]
    assert "lora_alpha" not in grid  # derived from the ratio, not searched


def test_float_step_grid_stays_inside_the_range(tmp_path: Path) -> None:
    """Float steps accumulate error (0.1 * 3 = 0.30000000000000004); Optuna warns on values past high."""
    space = load_space(_axes(tmp_path, """\
        learning_rate: {low: 1.0e-4, high: 3.0e-4, step: 1.0e-4}
        lora_dropout: {low: 0.0, high: 0.3, step: 0.1}
        """))
    for name in ("learning_rate", "lora_dropout"):
        axis = space.axes[name]
        values = space.grid()[name]
        assert len(values) == (3 if name == "learning_rate" else 4)
        assert values[0] == axis.low and values[-1] == axis.high
        assert all(axis.low <= v <= axis.high for v in values), values


# --- bad input: one line naming the file and the key --------------------------------------------


@pytest.mark.parametrize(
    "axes, names",
    [
        ('lora_r: "abc"', ["lora_r", "'abc'"]),
        ("lora_r: 2.5", ["lora_r", "2.5"]),
        ("lora_r: {choices: [8, 2.5]}", ["lora_r", "2.5"]),
        ("lora_r: 0", ["lora_r"]),
        ("lora_r: {choices: []}", ["lora_r", "choices"]),
        ("lora_r: {choices: 8}", ["lora_r", "choices"]),
        ("lora_r: {choices: [8, 16, 8]}", ["lora_r", "duplicates"]),
        ("lora_r: {low: 16, high: 8}", ["lora_r", "low"]),
        ("lora_r: {low: 8, high: 8}", ["lora_r", "low"]),
        ("lora_r: {low: 8}", ["lora_r", "high"]),
        ("lora_r: {choices: [8], low: 4}", ["lora_r", "low"]),
        ("lora_r: {low: 4, high: 16, stride: 4}", ["lora_r", "stride"]),
        ("lora_r: null", ["lora_r"]),
        ("learning_rate: {low: 0.0, high: 1.0e-3, log: true}", ["learning_rate"]),
        ("lora_dropout: {low: 0.0, high: 0.1, log: true}", ["lora_dropout", "log", "low > 0"]),
        ("learning_rate: {low: 1.0e-5, high: 1.0e-3, step: 1.0e-5, log: true}", ["learning_rate", "step", "log"]),
        ("learning_rate: {low: 1.0e-5, high: 1.0e-3, log: yes please}", ["learning_rate.log"]),
        ("learning_rate: {low: 1.0e-5, high: 1.0e-3, step: -1.0e-5}", ["learning_rate.step"]),
        ("learning_rate: {low: 1.0e-5, high: 2.0}", ["learning_rate.high"]),
        ("learning_rate: .inf", ["learning_rate"]),
        ("learning_rate: [1.0e-4, 2.0e-4]", ["learning_rate"]),
        ("lora_alpha: {ratio: {choices: [1, 2]}, choices: [16]}", ["lora_alpha"]),
        ("lora_alpha: {ratio: 0}", ["lora_alpha.ratio"]),
        ("lora_dropout: 1.0", ["lora_dropout"]),
        ("quantization: {low: 1, high: 2}", ["quantization", "range"]),
        ("quantization: {choices: [none, nf8]}", ["quantization", "nf8", "nf4-dq"]),
        ("quantization: int4", ["quantization", "int4"]),
        ("quantization: {choices: [none, off]}", ["quantization"]),  # YAML 1.1 reads off as False
        ("target_modules: {choices: [all-linear, attention+mlp]}", ["target_modules", "attention+mlp"]),
        ("lora_rank: 16", ["lora_rank", "unknown axis"]),
        # one bad value per LoRA-variant and training axis (issue 13)
        ("use_rslora: maybe", ["use_rslora", "'maybe'", "true or false"]),
        ("use_dora: {choices: [false, 2]}", ["use_dora", "2", "true or false"]),
        ("use_dora: {low: 0, high: 1}", ["use_dora", "choices"]),
        ("init_lora_weights: {choices: [true, pisa]}", ["init_lora_weights", "'pisa'", "pissa_niter_N"]),
        ("init_lora_weights: loftq", ["init_lora_weights", "loftq", "not supported"]),
        ("init_lora_weights: false", ["init_lora_weights", "false"]),
        ("init_lora_weights: pissa_niter_0", ["init_lora_weights", "pissa_niter_0"]),
        ("pissa_niter: -1", ["pissa_niter", "non-negative"]),
        ("pissa_niter: 4", ["pissa_niter", "only with init_lora_weights pissa"]),
        ("loraplus_lr_ratio: 0.5", ["loraplus_lr_ratio", ">= 1"]),
        ("batch_size: {choices: [4, 0]}", ["batch_size", "positive integer"]),
        ("grad_accum: 1.5", ["grad_accum", "1.5", "integer"]),
        ("warmup_ratio: {low: 0.0, high: 1.0}", ["warmup_ratio", "[0, 1)"]),
        ("weight_decay: -0.1", ["weight_decay", ">= 0"]),
        ("scheduler: {choices: [cosine, exponential]}", ["scheduler", "'exponential'", "warmup_stable_decay"]),
        ("scheduler: constant_with_warmup", ["scheduler", "write constant"]),
        ("max_grad_norm: -1", ["max_grad_norm", ">= 0"]),
        ("target_modules: [q_proj, q_proj]", ["target_modules", "twice"]),
        # conditions
        ("use_dora: {choices: [false, true], when: {use_rslora: true}}", ["use_dora.when", "'use_rslora'"]),
        ("use_dora: {choices: [false, true], when: {learning_rate: 1.0e-4}}", ["use_dora.when", "learning_rate"]),
        ("use_dora: {choices: [false, true], when: {quantization: nf4}}", ["use_dora.when", "never takes 'nf4'"]),
        ("use_dora: {choices: [false, true], when: [quantization]}", ["use_dora.when", "mapping"]),
        ("quantization: {choices: [none, nf4], when: {lora_r: 16}}", ["quantization", "core axis"]),
    ],
)
def test_bad_axis_is_one_line_naming_file_and_key(tmp_path: Path, axes: str, names: list[str]) -> None:
    _refuses(_axes(tmp_path, axes), *names)


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = _write(tmp_path, """\
        description: x
        axis:
          lora_r: 8
        """)
    _refuses(path, "'axis'", "unknown key")


def test_axes_must_be_a_mapping(tmp_path: Path) -> None:
    _refuses(_write(tmp_path, "axes: [lora_r, lora_alpha]\n"), "axes")
    _refuses(_write(tmp_path, "- lora_r\n", "list.yaml"), "axes")


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, """\
        description: broken
        axes:
          lora_r: {choices: [8, 16}
        """)
    _refuses(path, "line 3", "YAML")


def test_missing_file(tmp_path: Path) -> None:
    _refuses(tmp_path / "nope.yaml", "does not exist")


def test_empty_file_is_all_defaults(tmp_path: Path) -> None:
    space = load_space(_write(tmp_path, ""))
    fixed = {name: axis.choices for name, axis in space.axes.items()}
    assert fixed == {"lora_r": (16,), "lora_alpha": (32.0,), "learning_rate": (2e-4,), "quantization": ("none",),
                     "lora_dropout": (0.0,), "target_modules": ("all-linear",)}
    assert space.alpha_ratio is None


# --- accepted input ---------------------------------------------------------------------------------


def test_numeric_strings_are_accepted(tmp_path: Path) -> None:
    # YAML 1.1 (PyYAML) reads 1e-5 (no dot) as the string "1e-5".
    path = _axes(tmp_path, """\
        learning_rate: {low: 1e-5, high: 5e-4, log: true}
        lora_dropout: {choices: [0, 5e-2]}
        lora_alpha: "16"
        """)
    space = load_space(path)
    lr = space.axes["learning_rate"]
    assert (lr.low, lr.high, lr.log, lr.integer) == (1e-5, 5e-4, True, False)
    assert isinstance(lr.low, float)
    assert lr.distribution() == FloatDistribution(1e-5, 5e-4, log=True)
    assert space.axes["lora_dropout"].choices == (0.0, 0.05)
    assert space.axes["lora_alpha"].choices == (16.0,)


def test_a_bare_value_fixes_an_axis(tmp_path: Path) -> None:
    space = load_space(_axes(tmp_path, """\
        lora_r: 8
        quantization: nf4-dq
        learning_rate: 3.0e-4
        """))
    assert space.axes["lora_r"].distribution() == CategoricalDistribution([8])
    assert space.axes["quantization"].distribution() == CategoricalDistribution(["nf4-dq"])
    assert space.axes["learning_rate"].distribution() == CategoricalDistribution([3e-4])
    trial = _study().ask()
    params = suggest(trial, load_space(_axes(tmp_path, "lora_r: 8\nquantization: nf4-dq\n")))
    assert (params["lora_r"], params["quantization"]) == (8, "nf4-dq")
    assert trial.params["quantization"] == "nf4-dq"  # a fixed axis is still recorded


def test_ranges_become_optuna_distributions(tmp_path: Path) -> None:
    space = load_space(_axes(tmp_path, """\
        lora_r: {low: 4, high: 32, step: 4}
        learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}
        lora_dropout: {low: 0.0, high: 0.2, step: 0.05}
        """))
    assert space.axes["lora_r"].distribution() == IntDistribution(4, 32, step=4)
    assert space.axes["learning_rate"].distribution() == FloatDistribution(1e-5, 1e-3, log=True)
    assert space.axes["lora_dropout"].distribution() == FloatDistribution(0.0, 0.2, step=0.05)
    assert space.max_rank() == 32
    assert space.axes["learning_rate"].values() is None
    assert space.axes["lora_dropout"].values() == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])


def test_every_quantization_mode_is_a_valid_choice(tmp_path: Path) -> None:
    space = load_space(_axes(tmp_path, "quantization: {choices: [%s]}\n" % ", ".join(QUANTIZATION_MODES)))
    assert space.axes["quantization"].choices == QUANTIZATION_MODES


def test_parse_space_names_its_source() -> None:
    with pytest.raises(SpecError, match=r"^my-space: lora_r"):
        parse_space({"axes": {"lora_r": 0}}, "my-space")


# --- hash ---------------------------------------------------------------------------------------


def test_hash_is_stable_and_tracks_the_axes(tmp_path: Path) -> None:
    text = """\
        lora_r: {choices: [8, 16]}
        lora_alpha: {ratio: {choices: [1, 2]}}
        learning_rate: {low: 1.0e-4, high: 1.0e-3, log: true}
        """
    first = load_space(_axes(tmp_path, text)).hash
    assert load_space(_axes(tmp_path, text)).hash == first
    # The description and comments are not part of the space.
    _write(tmp_path, "description: other words  # comment\naxes:\n" + textwrap.indent(textwrap.dedent(text), "  "))
    assert load_space(tmp_path / "space.yaml").hash == first
    changed = [
        text.replace("[8, 16]", "[8, 32]"),
        text.replace("[1, 2]}}", "[1]}}"),
        text.replace("1.0e-3, log: true", "1.0e-3, log: false"),
        text.replace("high: 1.0e-3", "high: 2.0e-3"),
        text + "quantization: nf4\n",
    ]
    hashes = {load_space(_axes(tmp_path, variant)).hash for variant in changed}
    assert first not in hashes
    assert len(hashes) == len(changed)


def test_ratio_and_plain_alpha_hash_differently(tmp_path: Path) -> None:
    plain = load_space(_axes(tmp_path, "lora_alpha: 2\n")).hash
    ratio = load_space(_axes(tmp_path, "lora_alpha: {ratio: 2}\n")).hash
    assert plain != ratio


# --- sampling ------------------------------------------------------------------------------------


def test_suggest_records_every_param(tmp_path: Path) -> None:
    space = load_space(SPACES / "default.yaml")
    study = _study()
    trial = study.ask()
    params = suggest(trial, space)
    assert set(params) == RECORDED
    for name in RECORDED:
        assert trial.params[name] == params[name]
    assert params["lora_r"] in (8, 16, 32)
    assert 1e-4 <= params["learning_rate"] <= 1e-3
    assert params["quantization"] in ("none", "nf4-dq")
    assert params["lora_dropout"] == 0.0
    assert params["target_modules"] == "all-linear"


def test_alpha_ratio_is_recorded_as_lora_alpha(tmp_path: Path) -> None:
    space = load_space(_axes(tmp_path, """\
        lora_r: {choices: [4, 8, 16]}
        lora_alpha: {ratio: {choices: [1, 2]}}
        """))
    assert space.alpha_ratio is not None and "lora_alpha" not in space.axes
    study = _study()
    seen_ratios = set()
    for i in range(20):
        trial = study.ask()
        params = suggest(trial, space)
        study.tell(trial, float(i))
    for frozen in study.trials:
        ratio = frozen.params["lora_alpha_ratio"]
        assert ratio in (1.0, 2.0)
        assert frozen.params["lora_alpha"] == ratio * frozen.params["lora_r"]
        seen_ratios.add(ratio)
    assert seen_ratios == {1.0, 2.0}
    assert params["lora_alpha"] == study.trials[-1].params["lora_alpha"]


def test_fixed_ratio(tmp_path: Path) -> None:
    space = load_space(SPACES / "lora_vs_qlora.yaml")
    trial = _study().ask()
    params = suggest(trial, space)
    assert params["lora_r"] == 16
    assert params["lora_alpha"] == 32.0
    assert trial.params["lora_alpha_ratio"] == 2.0


# --- rank vs model width -----------------------------------------------------------------------


def test_check_rank_fits_refuses_a_rank_wider_than_a_layer(tmp_path: Path) -> None:
    dims = ModelDims(hidden=64, kv=32, intermediate=128)
    path = _axes(tmp_path, "lora_r: {choices: [8, 64]}\n")
    with pytest.raises(SpecError) as info:
        check_rank_fits(load_space(path), dims, "tiny-llama")
    message = str(info.value)
    assert "\n" not in message
    for part in (str(path), "lora_r", "64", "(32", "k/v_proj", "tiny-llama", "<= 32"):
        assert part in message, f"{part!r} not in {message!r}"


def test_check_rank_fits_passes_up_to_the_width(tmp_path: Path) -> None:
    dims = ModelDims(hidden=64, kv=32, intermediate=128)
    check_rank_fits(load_space(_axes(tmp_path, "lora_r: {choices: [8, 32]}\n")), dims, "tiny-llama")
    check_rank_fits(load_space(_axes(tmp_path, "lora_r: {low: 4, high: 32, step: 4}\n")), dims, "tiny-llama")
    with pytest.raises(SpecError, match="lora_r: 36"):
        check_rank_fits(load_space(_axes(tmp_path, "lora_r: {low: 4, high: 36, step: 4}\n")), dims, "tiny-llama")


def test_attention_targets_ignore_the_intermediate_width(tmp_path: Path) -> None:
    dims = ModelDims(hidden=64, kv=64, intermediate=16)
    attention = _axes(tmp_path, "lora_r: 32\ntarget_modules: attention\n")
    check_rank_fits(load_space(attention), dims, "m")
    both = _axes(tmp_path, "lora_r: 32\ntarget_modules: {choices: [attention, all-linear]}\n")
    with pytest.raises(SpecError) as info:
        check_rank_fits(load_space(both), dims, "m")
    assert "(16, intermediate (MLP)" in str(info.value)
    assert "all-linear" in str(info.value)

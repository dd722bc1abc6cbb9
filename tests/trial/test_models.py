"""harness.trial.models.model_dims: layer widths read once per model config and kept in the cache, so a sweep's
start does not build a weightless model (and import transformers' modeling code) every time."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.trial import models


@pytest.fixture()
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _config_folder(tmp_path: Path, **overrides: int) -> str:
    from transformers import LlamaConfig

    folder = tmp_path / f"cfg-{'-'.join(f'{k}{v}' for k, v in overrides.items()) or 'base'}"
    LlamaConfig(**{**models.TINY_LLAMA, **overrides}).save_pretrained(folder)
    return str(folder)


@pytest.mark.integration
def test_the_widths_are_read_once_and_equal_the_model_s(own_cache: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _config_folder(tmp_path)
    first = models.model_dims(folder)
    assert first.linear == {"q_proj": 64, "k_proj": 32, "v_proj": 32, "o_proj": 64, "gate_proj": 64,
                            "up_proj": 64, "down_proj": 64}
    assert len(list((own_cache / "dims").glob("*.json"))) == 1

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("a weightless model was built although the widths were cached")

    monkeypatch.setattr(models, "_read_linear_widths", no_model)
    assert models.model_dims(folder) == first  # from the cache
    with pytest.raises(AssertionError, match="weightless"):  # another config is another key
        models.model_dims(_config_folder(tmp_path, intermediate_size=96))


@pytest.mark.integration
def test_a_damaged_cache_file_is_read_again_from_the_model(own_cache: Path, tmp_path: Path) -> None:
    folder = _config_folder(tmp_path)
    widths = models.model_dims(folder).linear
    (cached,) = (own_cache / "dims").glob("*.json")
    cached.write_text("{not json")
    assert models.model_dims(folder).linear == widths
    assert models.model_dims(folder).linear == widths  # and written again whole

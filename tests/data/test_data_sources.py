"""Fast tests of where the eval split comes from: a `split` column, a hub dataset's own splits, or a hash."""

from __future__ import annotations

import pytest

from helpers import write_jsonl
from harness.data import DataError, load_examples
from harness.config.dataset import DataSpec

ALL = 10**6


def qa(i: int, split: str | None = None) -> dict:
    record = {"prompt": f"q{i}", "completion": f"a{i}"}
    return record if split is None else {**record, "split": split}


def answers(examples) -> set[str]:
    return {e.completion for e in examples}


# ---- a split column ------------------------------------------------------------------------------


def test_split_column_gives_the_eval_split(tmp_path):
    records = [qa(i, "train") for i in range(10)] + [qa(i, "validation") for i in range(10, 13)]
    records += [qa(i, "test") for i in range(13, 16)]
    splits = load_examples(DataSpec(name=write_jsonl(tmp_path / "d.jsonl", records), eval_size=ALL))
    assert answers(splits.train) == {f"a{i}" for i in range(10)}
    assert answers(splits.eval) == {"a10", "a11", "a12"}  # test rows are neither trained on nor scored


@pytest.mark.parametrize("held_value", ["test", "eval", "Validation", "dev"])
def test_split_column_other_names_for_held_out(tmp_path, held_value):
    records = [qa(i, "train") for i in range(5)] + [qa(9, held_value)]
    splits = load_examples(DataSpec(name=write_jsonl(tmp_path / "d.jsonl", records)))
    assert answers(splits.eval) == {"a9"}


def test_split_column_with_only_train_rows_falls_back_to_the_hash(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [qa(i, "train") for i in range(40)])
    splits = load_examples(DataSpec(name=path, eval_fraction=0.25, eval_size=ALL))
    assert 3 <= len(splits.eval) <= 20 and len(splits.train) + len(splits.eval) == 40


def test_split_column_in_csv_and_through_column_map(tmp_path):
    lines = ["question,answer,fold"] + [f"q{i},a{i},{'valid' if i < 2 else 'train'}" for i in range(6)]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    spec = DataSpec(name=str(tmp_path / "d.csv"),
                    column_map={"prompt": "question", "completion": "answer", "split": "fold"})
    splits = load_examples(spec)
    assert answers(splits.eval) == {"a0", "a1"} and answers(splits.train) == {"a2", "a3", "a4", "a5"}


def test_split_is_the_same_for_every_load_and_hash_changes_with_the_eval_set(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [qa(i) for i in range(50)])
    first, second = load_examples(DataSpec(name=path)), load_examples(DataSpec(name=path))
    assert first == second and first.split_hash == second.split_hash
    assert load_examples(DataSpec(name=path, eval_fraction=0.5)).split_hash != first.split_hash


# ---- Hugging Face datasets -----------------------------------------------------------------------


def test_hub_id_offline_gives_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError) as info:
        load_examples(DataSpec(name="org/name"))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("dataset 'org/name' is not a built-in (stdlib-qa, headline-sentiment, "
                              "fictional-company), not a local file, and cannot be fetched from the Hugging Face "
                              "hub (offline?): ")
    with pytest.raises(DataError, match=r"not a built-in \(.*\) \(did you mean 'stdlib-qa'\?\)"):
        load_examples(DataSpec(name="stdlib_qa"))


def fake_hub(monkeypatch, dataset_dict) -> list[str]:
    """Make datasets.load_dataset return ``dataset_dict``; returns the names it was called with."""
    datasets = pytest.importorskip("datasets")
    calls: list[str] = []

    def load_dataset(name, *args, **kwargs):
        calls.append(name)
        return dataset_dict

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_hub_dataset_uses_its_validation_split_and_label_names(monkeypatch):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    rows = lambda n, offset: {"sentence": [f"s{offset + i}" for i in range(n)], "label": [i % 2 for i in range(n)]}
    data = datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows(8, 0), features=features),
                                 "validation": datasets.Dataset.from_dict(rows(4, 100), features=features),
                                 "test": datasets.Dataset.from_dict(rows(4, 200), features=features)})
    calls = fake_hub(monkeypatch, data)
    splits = load_examples(DataSpec(name="org/sst", column_map={"text": "sentence"}, eval_size=ALL))
    assert calls == ["org/sst"]
    assert splits.source == "hub dataset org/sst" and splits.format == "classification"
    assert splits.labels == ("negative", "positive") and answers(splits.eval) == {"negative", "positive"}
    assert len(splits.train) == 8 and len(splits.eval) == 4
    texts = {e.prompt[0]["content"].split("Text: ")[1].split("\n")[0] for e in splits.eval}
    assert texts == {"s100", "s101", "s102", "s103"}  # the validation rows, not the test rows


def test_hub_dataset_without_validation_holds_out_by_hash(monkeypatch):
    datasets = pytest.importorskip("datasets")
    data = datasets.DatasetDict({"train": datasets.Dataset.from_dict(
        {"prompt": [f"q{i}" for i in range(30)], "completion": [f"a{i}" for i in range(30)]})})
    fake_hub(monkeypatch, data)
    splits = load_examples(DataSpec(name="org/qa", eval_fraction=0.2, eval_size=ALL))
    assert len(splits.train) + len(splits.eval) == 30 and 1 <= len(splits.eval) <= 15


def test_hub_dataset_errors(monkeypatch):
    datasets = pytest.importorskip("datasets")
    fake_hub(monkeypatch, datasets.DatasetDict({"validation": datasets.Dataset.from_dict({"text": ["x"]})}))
    with pytest.raises(DataError, match=r"dataset 'org/x' has splits \['validation'\] but no `train` split"):
        load_examples(DataSpec(name="org/x"))
    fake_hub(monkeypatch, datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": []})}))
    with pytest.raises(DataError, match="dataset 'org/x': its train split has no rows"):
        load_examples(DataSpec(name="org/x"))
    fake_hub(monkeypatch, datasets.DatasetDict({"train": datasets.Dataset.from_dict({"body": ["a", "b"]})}))
    with pytest.raises(DataError, match=r"org/x train\[0\]: columns are \['body'\]; expected"):
        load_examples(DataSpec(name="org/x"))


def test_local_dataset_folders(tmp_path, monkeypatch):
    """A folder of split files goes through datasets.load_dataset; a save_to_disk folder through load_from_disk."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    folder = tmp_path / "ds"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [qa(i) for i in range(6)])
    write_jsonl(folder / "test.jsonl", [qa(i) for i in range(10, 12)])
    splits = load_examples(DataSpec(name=str(folder)))
    assert answers(splits.eval) == {"a10", "a11"} and len(splits.train) == 6
    assert splits.source == str(folder.resolve())
    datasets.load_dataset(str(folder)).save_to_disk(str(tmp_path / "saved"))
    saved = load_examples(DataSpec(name=str(tmp_path / "saved")))
    assert (saved.train, saved.eval) == (splits.train, splits.eval)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="data folder .*empty.: Hugging Face datasets cannot read it"):
        load_examples(DataSpec(name=str(tmp_path / "empty")))


def test_sweep_help_names_every_kind_of_data_it_reads() -> None:
    """`harness sweep --help` lists each built-in task and file type `--data` accepts (typer's help, in-process)."""
    from typer.testing import CliRunner

    from harness.cli import app
    from harness.data.builtins import builtin_names
    from harness.data.files import SUFFIXES

    raw = CliRunner().invoke(app, ["sweep", "--help"]).output
    text = " ".join("".join(c for c in raw if c not in "│╭╮╰╯─").split())  # rich's box, wrapped lines joined
    for kind in [*builtin_names(), *SUFFIXES, "hub dataset id"]:
        assert kind in text, kind

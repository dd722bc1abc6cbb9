"""The example notebooks run top to bottom (nbclient, a fresh kernel, in a temporary folder; outputs are not
committed): examples/quickstart.ipynb on tiny-llama, examples/lora_vs_qlora.ipynb on the committed paired study."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import REPO

EXAMPLES = REPO / "examples"


def execute(name: str, folder: Path, timeout: int = 600) -> object:
    """Run a notebook in a fresh Python kernel with `folder` as its working directory; the executed notebook."""
    nbclient = pytest.importorskip("nbclient")
    import nbformat

    book = nbformat.read(EXAMPLES / name, as_version=4)
    assert all(not cell.get("outputs") for cell in book.cells if cell.cell_type == "code"), \
        f"{name}: commit it without outputs"
    os.environ["HARNESS_REPO"] = str(REPO)  # the kernel inherits it: where lora_vs_qlora finds the records
    client = nbclient.NotebookClient(book, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(folder)}})
    client.execute()
    return book


def outputs(book: object) -> str:
    """Every text and HTML output of the executed notebook, joined."""
    parts = []
    for cell in book.cells:  # type: ignore[attr-defined]
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            data = out.get("data", {})
            parts.append(data.get("text/html", "") + data.get("text/plain", ""))
    return "\n".join(parts)


@pytest.mark.integration
@pytest.mark.usefixtures("tiny_checkpoint")
def test_the_quickstart_notebook_sweeps_compares_reports_and_generates(tmp_path: Path) -> None:
    book = execute("quickstart.ipynb", tmp_path)
    assert (tmp_path / "experiments/quickstart/best_adapter/adapter_config.json").exists()
    for written in ("comparison.md", "recommended.yaml", "report.html"):
        assert (tmp_path / "reports/quickstart" / written).exists(), written
    shown = outputs(book)
    assert "study quickstart: 3 trials" in shown and "LoRA vs QLoRA" in shown and "data:image/png;base64" in shown
    assert "step 1/2" not in shown and "loading..." not in shown  # one live line, updated in place, then cleared
    cleared = [out for cell in book.cells for out in cell.get("outputs", [])  # type: ignore[attr-defined]
               if out.get("output_type") == "display_data" and out.get("data", {}).get("text/plain") == "''"]
    assert len(cleared) == 3, "one live line per trial, each cleared when its trial ended"


@pytest.mark.integration
def test_the_lora_vs_qlora_notebook_reads_the_committed_study(tmp_path: Path) -> None:
    book = execute("lora_vs_qlora.ipynb", tmp_path)
    shown = outputs(book)
    assert "imported 30 trials" in shown and "nf4 reaches eval_loss worse by" in shown
    assert (tmp_path / "reports/lora_vs_qlora_paired/comparison.json").exists()

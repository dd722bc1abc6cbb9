"""The documents of `harness validate`, `harness advise` and `harness defaults`: a doc (plain JSON-able dict) as
`<stem>.json` with the command that made it, `<stem>.png` (its plot) and `<stem>.md` (linking the plot), in the
study's reports folder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.evidence.transfer import defaults_markdown
from harness.evidence.validation import validation_markdown
from harness.runtime.redaction import redact_text, redact_values
from harness.publish.plots import plot_regret, plot_validation


def write_doc_files(reports_dir: Path, stem: str, doc: dict[str, Any], command: str,
                    plot: Callable[[dict[str, Any], Path], str | None],
                    markdown: Callable[[dict[str, Any], str, str | None], str]) -> list[Path]:
    """A report doc as `<stem>.json` (with the command that made it), `<stem>.png` (unless `plot` says why not)
    and `<stem>.md` (linking the plot) in the study's reports folder: validate's and advise's files."""
    import json

    reports_dir.mkdir(parents=True, exist_ok=True)
    command, doc = redact_text(command), redact_values(doc)  # a --storage URL's password stays out of the files
    js = reports_dir / f"{stem}.json"
    js.write_text(json.dumps({**doc, "command": command}, indent=2, default=str))
    png = reports_dir / f"{stem}.png"
    skipped = plot(doc, png)
    md = reports_dir / f"{stem}.md"
    md.write_text(markdown(doc, command, None if skipped else png.name))
    return [md, js] + ([] if skipped else [png])


def write_validation(doc: dict[str, Any], reports_dir: Path, command: str) -> list[Path]:
    """validation.json, validation.md and validation.png in the study's reports folder."""
    return write_doc_files(reports_dir, "validation", doc, command, plot_validation, validation_markdown)


def write_defaults(doc: dict[str, Any], reports_dir: Path, command: str) -> list[Path]:
    """defaults.json, defaults.md and defaults.png (the regret heatmap) in the cross-evaluation's reports folder."""
    return write_doc_files(reports_dir, "defaults", doc, command, plot_regret, defaults_markdown)

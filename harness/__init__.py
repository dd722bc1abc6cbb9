"""harness: find out which LoRA / QLoRA settings to fine-tune with, and prove it.

Every command of the `harness` command line is a function here, with the flags as keyword arguments::

    import harness
    study = harness.sweep(model="tiny-llama", trials=4, max_steps=20, out="experiments/demo")
    study.best            # params, value, adapter path
    study.trials          # a pandas DataFrame, one row per trial
    harness.compare(study.name, out="experiments/demo")

Bad input raises `harness.SpecError` (never SystemExit); Ctrl-C raises KeyboardInterrupt and leaves the study
resumable. Importing `harness` is cheap: the functions load torch and the rest on first call.
"""

from __future__ import annotations

import sys
import types
from importlib import import_module
from typing import TYPE_CHECKING, Any

from harness.config.errors import SpecError

__version__ = "0.1.0"

_WHERE = {
    "sweep": "sweeping", "plan": "sweeping", "worker": "sweeping", "import_": "sweeping", "status": "sweeping",
    "compare": "readouts", "recommend": "readouts", "validate": "readouts", "advise": "readouts",
    "report": "readouts", "export": "readouts", "ExportRefused": "readouts", "defaults": "readouts",
    "doctor": "machine", "datasets": "machine", "models": "machine", "install_model": "machine",
    "dashboard": "machine",
    "StudyHandle": "results", "Best": "results", "ComparisonResult": "results", "Recommendation": "results",
    "Report": "results", "Documents": "results",
}
"""Public name -> the module of harness.api that defines it (imported on first use)."""

__all__ = ["SpecError", "__version__", *_WHERE]

if TYPE_CHECKING:
    from harness.api.machine import dashboard, datasets, doctor, install_model, models
    from harness.api.readouts import (ExportRefused, advise, compare, defaults, export, recommend, report,
                                      validate)
    from harness.api.results import Best, ComparisonResult, Documents, Recommendation, Report, StudyHandle
    from harness.api.sweeping import import_, plan, status, sweep, worker


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    value = getattr(import_module(f"harness.api.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """`harness` itself: importing a subpackage that shares a command's name (`harness/advise/`, the layer of
    `harness.advise`'s read-out) must not replace the command. Python's import sets the subpackage as an
    attribute of its parent; for those names it stays reachable only through sys.modules and `import`."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _WHERE and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

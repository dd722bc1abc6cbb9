"""keep_16bit in a study: the layers its trials keep in 16-bit are pinned once chosen.

The first trial of a (mode, fraction, rule, seed) that loads its base records the layers it kept in the study
(user attr `kept_16bit`); every later trial of that spec, a resumed study's and a confirmation's included, is
configured with that list (QuantSpec.kept_modules) instead of choosing again, so a changed sensitivity cache or
package cannot change the arm half-way. The rule itself is pinned with the space (its hash refuses a resume with
another space)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from harness.config.model import QuantSpec
from harness.config.trial import TrialConfig
from harness.trial.result import TrialResult

PINS_ATTR = "kept_16bit"
"""Study user attr: pin key -> the kept layers' full names."""


def pin_key(quant: QuantSpec) -> str | None:
    """The key of a spec that keeps layers (mode, fraction, rule, seed); None for one that keeps none."""
    if quant.mode == "none" or not quant.keep_16bit:
        return None
    return json.dumps([quant.mode, float(quant.keep_16bit), quant.keep_16bit_rule, quant.keep_16bit_seed])


def pinned(config: TrialConfig, attrs: dict[str, Any]) -> TrialConfig:
    """`config` with the kept layers the study pinned for its spec (unchanged when none is pinned yet)."""
    key = pin_key(config.quant)
    modules = (attrs.get(PINS_ATTR) or {}).get(key) if key is not None else None
    if modules is None or config.quant.kept_modules is not None:
        return config
    return dataclasses.replace(config, quant=dataclasses.replace(config.quant, kept_modules=tuple(modules)))


def record_pin(study: Any, config: TrialConfig | None, result: TrialResult) -> None:
    """Pin the layers a trial kept, when it is the first of its spec to have loaded its base."""
    key = pin_key(config.quant) if config is not None else None
    if key is None or not (result.kept_16bit_modules or result.status == "complete"):
        return
    pins = dict(study.user_attrs.get(PINS_ATTR) or {})
    if key not in pins:
        pins[key] = list(result.kept_16bit_modules)
        study.set_user_attr(PINS_ATTR, pins)

"""TrialConfig: everything one trial needs (model, quantization, LoRA, training, data, eval); a trial is a
function of this and nothing else."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from harness.config.dataset import DataSpec
from harness.config.errors import check
from harness.config.evaluation import EvalSpec
from harness.config.lora import LoraSpec, combination_error
from harness.config.model import ModelSpec, QuantSpec, keep_16bit_error
from harness.config.training import TrainSpec


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial needs: a trial is a function of this and nothing else."""

    model: ModelSpec = field(default_factory=ModelSpec)
    quant: QuantSpec = field(default_factory=QuantSpec)
    lora: LoraSpec = field(default_factory=LoraSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    data: DataSpec = field(default_factory=DataSpec)
    eval: EvalSpec = field(default_factory=EvalSpec)
    adapter_dir: str | None = None
    """Where to save the trained adapter (safetensors); None keeps nothing."""
    fault: str | None = None
    """Test hook: `raise`, `nan`, `oom`, `kill` or `slow` makes the trial fail or crawl in that way (never set by users)."""

    def __post_init__(self) -> None:
        problem = (combination_error(self.quant.mode, self.lora.init, self.lora.use_dora)
                   or keep_16bit_error(self.quant.mode, self.quant.keep_16bit))
        check(problem is None, problem or "")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrialConfig":
        return cls(
            model=ModelSpec(**data.get("model", {})),
            quant=QuantSpec(**data.get("quant", {})),
            lora=LoraSpec(**data.get("lora", {})),
            train=TrainSpec(**data.get("train", {})),
            data=DataSpec(**data.get("data", {})),
            eval=EvalSpec(**data.get("eval", {})),
            adapter_dir=data.get("adapter_dir"),
            fault=data.get("fault"),
        )

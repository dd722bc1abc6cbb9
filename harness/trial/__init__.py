"""One trial, from a TrialConfig to a TrialResult: the base model and its quantization, the adapter, the
short fine-tune, scoring, generation and measurement; `harness doctor` tries each mode here. Knows nothing of
Optuna or W&B. May import: config/, runtime/, data/, metrics/."""

"""The Optuna side: studies and storages, the sweep loop, samplers and pruners, supervised trial workers,
recovery of lost trials, trials.jsonl, per-trial W&B runs, progress lines, the artifact store optuna-dashboard
serves (`artifacts`), and the study read back as rows (`readout`). May import: config/, runtime/, data/,
metrics/, trial/."""

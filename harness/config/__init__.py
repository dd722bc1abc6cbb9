"""The floor: frozen, validated specs (model, quantization, LoRA, training, data, eval, trial, sweep), search
spaces, experiment files and the field's published defaults. Pure data and its checks: nothing here loads a
model, opens a study or touches the machine. May import: nothing else in harness."""

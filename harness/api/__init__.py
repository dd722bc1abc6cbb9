"""The Python API: every command of the command line as a function with the flags as keyword arguments
(`harness.sweep(model=..., trials=..., out=...)`), returning objects a notebook shows (`_repr_html_`, pandas
DataFrames) and raising instead of exiting: bad input is `harness.SpecError`, Ctrl-C `KeyboardInterrupt` (the
study stays resumable). `harness.cli` parses flags, calls these and prints what they return.

Modules: sweeping (sweep, worker, import_, status), readouts (compare, recommend, validate, advise, report,
export), machine (doctor, datasets, models, install_model, dashboard), results (the typed results). May import: every layer below
(config, runtime, data, metrics, trial, search, evidence, publish, advise); the command line imports it.
"""

"""What a finished study proves: LoRA vs QLoRA (or any axis) compared with intervals, confirmation seeds,
validation at the long budget, the statistics behind them, and the recommended config. Runs trials only
through search/. May import: config/, runtime/, data/, metrics/, trial/, search/."""

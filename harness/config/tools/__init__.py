"""Other fine-tuning tools' config files (Axolotl, LLaMA-Factory, TRL, Unsloth): which of their keys carries
each harness setting, both ways (the tuned settings out, a user's file in). Pure data and its checks: nothing
here imports the tools themselves. May import: harness.config."""

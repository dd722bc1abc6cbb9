"""harness: find out which LoRA / QLoRA settings to fine-tune with, and prove it."""

__version__ = "0.1.0"

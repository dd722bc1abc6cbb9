"""Local `evaluate` metric scripts shipped with harness, loaded by file path (no hub, no network).

Each script is an ordinary `evaluate.Metric` module: `evaluate.load("<this folder>/exact_match.py")`
works without harness too. They share the text normalisation in `text.py` through a relative
import, which `evaluate` copies next to the script in its module cache.
"""

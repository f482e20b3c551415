"""The benchmark suite: ``python -m bench`` (or ``scripts/bench``). See README "Performance"."""

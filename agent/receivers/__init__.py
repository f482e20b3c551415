"""Agent components of one role; see agent/pipeline.py for how they connect."""

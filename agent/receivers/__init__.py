"""Receivers: where lines come from. Each hands :class:`~agent.stages.Chunk` s of complete lines to its
consumer (the source's line processor) and reports file identities to the checkpointer.

``file.py`` tails globbed files (rotation, truncation, checkpoints: its docstring is the design note),
``http.py`` takes events apps POST on loopback into a disk spool it tails, ``notify.py`` wakes file
receivers on file-system changes. A receiver meets :class:`~agent.stages.Receiver`; its factory is in
``agent/registry.py`` under its config ``type``.
"""

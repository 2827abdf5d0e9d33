"""The engine: training a model with Accelerate (``training``), scoring every row with a trained one (``scoring``),
and checkpoints that never execute code (``checkpoint``)."""

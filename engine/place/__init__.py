"""Placement (above model): request preparation, the native heuristic's wrapper, solutions, the
objective and its scoring, explanations and prioritize scores. Imports only ``model`` and the
native kernels (``gangplace.engine._core``)."""

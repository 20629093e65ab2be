"""Public import path kept for ``from gangplace.engine.synthetic import generate`` (the module
lives in engine/model/synthetic.py)."""
from .model.synthetic import PRESETS, generate  # noqa: F401

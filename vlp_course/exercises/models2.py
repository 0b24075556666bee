"""Notebook 12's and 13's exercise checks moved to one file per model: :mod:`vlp_course.exercises.vilbert`
(ViLBERT) and :mod:`vlp_course.exercises.vlbert` (VL-BERT)."""

from __future__ import annotations

__all__: list[str] = []

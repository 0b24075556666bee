"""Formerly the checks of the model notebooks' exercises; each model now has its own module:
:mod:`vlp_course.exercises.visualbert` (notebook 10), :mod:`vlp_course.exercises.lxmert` (notebook 11).
"""

from __future__ import annotations

__all__: list[str] = []

"""Pretraining objectives shared by the text and the vision-language parts of the course.

* :mod:`~vlp_course.pretraining.text_masking` — BERT's masked-language-modeling corruption
  (15% of tokens; 80% [MASK], 10% random, 10% unchanged), token-level or whole-word.
"""

from vlp_course.pretraining.losses import IGNORE_INDEX
from vlp_course.pretraining.text_masking import apply_mask_decisions, mask_tokens

__all__ = ["IGNORE_INDEX", "mask_tokens", "apply_mask_decisions"]

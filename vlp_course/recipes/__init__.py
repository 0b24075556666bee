"""The recipes layer: how each of the four models is fed from the scenes, pretrained, fine-tuned and
evaluated, and the checkpoints the course ships.

* :mod:`~vlp_course.recipes.base` — :class:`Recipe` and :class:`SceneAdapter`, the shared pieces;
* :mod:`~vlp_course.recipes.visualbert`, :mod:`~.lxmert`, :mod:`~.vilbert`, :mod:`~.vlbert` — one
  adapter per model, each with one ``pretrain_step`` to read in order (pair -> mask words -> lay out
  regions -> mask regions -> model -> losses) and one ``vqa_step``;
* :mod:`~vlp_course.recipes.run` — pretraining, VQA fine-tuning and evaluation loops;
* :mod:`~vlp_course.recipes.shipped` — the shipped checkpoints: load, reproduce
  (``python -m vlp_course.recipes.shipped --model X``), metadata.

This is the top layer: it imports ``models``, ``data`` and ``pretraining``; nothing below imports it.
"""

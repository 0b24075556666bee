"""Data of the vision-language part: synthetic scenes and the real datasets' file formats.

* :mod:`~vlp_course.data.scenes` — the scene generator (shapes, colours, sizes, boxes, scene graph).
* :mod:`~vlp_course.data.captions` — captions from a grammar, hard negatives for image-text matching, and
  the parser that reads a caption back into its claim (:func:`parse_caption`, :func:`caption_is_true`).
* :mod:`~vlp_course.data.caption_metrics` — COCO caption metrics (BLEU, METEOR, ROUGE-L, CIDEr-D) from
  pycocoevalcap, with a no-Java fallback (imported on its own: ``from vlp_course.data.caption_metrics import caption_scores``).
* :mod:`~vlp_course.data.vqa` — VQA questions, official accuracy, soft scores, VQA v2 files.
* :mod:`~vlp_course.data.nlvr2` — NLVR2-style statements about image pairs, NLVR2 JSON lines.
* :mod:`~vlp_course.data.coco` — COCO captions / instances files.
* :mod:`~vlp_course.data.dataset` — everything together, cached on disk (:func:`load_vl_scenes`).
* :mod:`~vlp_course.data.detector` — the stand-in object detector and its region features.
* :mod:`~vlp_course.data.bottom_up` — reading precomputed bottom-up-attention features (TSV, npz).
"""

from vlp_course.data.captions import (
    Caption, Claim, Desc, caption_is_true, claim_holds, hard_negative, parse_caption, scene_captions,
)
from vlp_course.data.dataset import VLScenes, build_vl_scenes, load_vl_scenes, read_vl_scenes
from vlp_course.data.nlvr2 import NLVR2Example, load_nlvr2, make_nlvr2, write_nlvr2
from vlp_course.data.scenes import (
    COLORS, RELATIONS, SHAPES, SIZES, Scene, SceneObject, SceneSet, make_scene, make_scenes, relations, render_scene,
)
from vlp_course.data.vqa import (
    AnswerVocab, VQAQuestion, evaluate_vqa, load_vqa, load_vqa_results, normalize_answer, scene_questions,
    soft_score, soft_scores, vqa_accuracy, write_vqa,
)

__all__ = [
    "SHAPES", "COLORS", "SIZES", "RELATIONS", "Scene", "SceneObject", "SceneSet", "make_scene", "make_scenes",
    "render_scene", "relations", "Caption", "Claim", "Desc", "claim_holds", "hard_negative", "scene_captions",
    "parse_caption", "caption_is_true",
    "VLScenes", "build_vl_scenes", "load_vl_scenes", "read_vl_scenes", "NLVR2Example", "load_nlvr2", "make_nlvr2",
    "write_nlvr2", "AnswerVocab", "VQAQuestion", "evaluate_vqa", "load_vqa", "load_vqa_results", "normalize_answer",
    "scene_questions", "soft_score", "soft_scores", "vqa_accuracy", "write_vqa",
]

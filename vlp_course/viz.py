"""Interactive explorers that also read as plain output.

A notebook explorer must show something in every viewer: a live Jupyter kernel (where the
learner moves sliders), a static page of the executed notebook and the CI run (where widgets do not
render). :func:`explore` therefore draws the default state as ordinary output first, with a
display id, and when :mod:`ipywidgets` is importable it shows the controls underneath; moving a
control redraws *that same output* in place, so the default state is never shown twice.

The render function does the drawing and must be cheap (a forward pass of a small model, a
matplotlib figure): nothing is trained inside a callback.
"""

from __future__ import annotations

import io
from typing import Any, Callable

__all__ = ["explore", "as_display", "show_vqa_answer"]


def as_display(result: Any):
    """An IPython display object for what a render function returned.

    A matplotlib ``Figure`` becomes a PNG (the figure is closed so that the inline backend does not
    draw it a second time); a string becomes plain text; anything else is displayed as it is.
    Raises ``ValueError`` for ``None`` (a render function must return what it drew).
    """
    from IPython.display import Image, Pretty

    if result is None:
        raise ValueError("a render function must return a matplotlib Figure or a str, got None")
    if hasattr(result, "savefig"):
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        result.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        plt.close(result)
        return Image(data=buf.getvalue(), format="png")
    if isinstance(result, str):
        return Pretty(result)
    return result


def _control(name: str, spec: tuple, widgets):
    """An ipywidgets control for one ``explore`` spec (see :func:`explore`)."""
    if len(spec) == 1 and isinstance(spec[0], str):
        return widgets.Text(value=spec[0], description=name, continuous_update=False)
    if len(spec) == 2 and isinstance(spec[1], (list, tuple)):
        return widgets.Dropdown(options=list(spec[1]), value=spec[0], description=name)
    if len(spec) in (3, 4) and all(isinstance(x, (int, float)) for x in spec):
        cls = widgets.IntSlider if all(isinstance(x, int) for x in spec) else widgets.FloatSlider
        lo, hi = spec[1], spec[2]
        step = spec[3] if len(spec) == 4 else (1 if cls is widgets.IntSlider else (hi - lo) / 20)
        return cls(value=spec[0], min=lo, max=hi, step=step, description=name, continuous_update=False)
    raise ValueError(f"control {name!r}: expected (text,), (default, [options]) or (default, lo, hi[, step]), got {spec!r}")


def _default(name: str, spec: Any) -> Any:
    if not isinstance(spec, tuple):
        return spec
    if len(spec) == 1 and isinstance(spec[0], str):
        return spec[0]
    if len(spec) == 2 and isinstance(spec[1], (list, tuple)):
        if spec[0] not in spec[1]:
            raise ValueError(f"control {name!r}: default {spec[0]!r} is not one of the options {list(spec[1])}")
        return spec[0]
    if len(spec) in (3, 4) and all(isinstance(x, (int, float)) for x in spec):
        if not spec[1] <= spec[0] <= spec[2]:
            raise ValueError(f"control {name!r}: default {spec[0]} is outside [{spec[1]}, {spec[2]}]")
        return spec[0]
    raise ValueError(f"control {name!r}: expected (text,), (default, [options]) or (default, lo, hi[, step]), got {spec!r}")


def explore(render: Callable[..., Any], **controls: Any) -> Callable[..., Any]:
    """Show ``render(**defaults)`` now, then (with ipywidgets) controls that redraw it in place.

    Each keyword names an argument of ``render``; its value is

    - ``(text,)``: a text box (a one-element tuple holding the default string);
    - ``(default, [options])``: a drop-down list;
    - ``(default, lo, hi)`` or ``(default, lo, hi, step)``: an integer slider if all four are ints,
      else a float slider;
    - anything else: a value held fixed.

    Without ipywidgets the default state is all there is, followed by one line saying how to call
    ``render`` by hand. Returns ``render``, so that a learner can call it directly.

    Raises ``ValueError`` for an empty ``controls``, a malformed spec or a default outside its range.
    """
    from IPython.display import display

    if not controls:
        raise ValueError("explore needs at least one keyword argument of the render function")
    defaults = {k: _default(k, spec) for k, spec in controls.items()}
    handle = display(as_display(render(**defaults)), display_id=True)
    try:
        import ipywidgets as widgets
    except ImportError:
        print(f"(ipywidgets is not installed: call {render.__name__}(...) to draw another state)")
        return render
    live = {k: _control(k, spec, widgets) for k, spec in controls.items() if isinstance(spec, tuple)}
    if not live:
        return render

    def redraw(_change=None) -> None:
        values = dict(defaults)
        values.update({k: c.value for k, c in live.items()})
        handle.update(as_display(render(**values)))

    for control in live.values():
        control.observe(redraw, names="value")
    display(widgets.HBox(list(live.values()), layout=widgets.Layout(flex_flow="row wrap")))
    return render


def show_vqa_answer(image, prediction: dict, ax=None):
    """Draw one VQA prediction on its image: the (H, W, 3) uint8 image, titled with the question, the
    model's answer with its VQA accuracy, and the annotators' answers with their counts.

    ``prediction`` is one dict of :func:`vlp_course.recipes.run.vqa_predictions`. Returns the axes.
    """
    import matplotlib.pyplot as plt
    from collections import Counter

    if ax is None:
        _, ax = plt.subplots(figsize=(3.2, 3.4))
    ax.imshow(image)
    ax.set_xticks([]), ax.set_yticks([])
    given = ", ".join(f"{a} ×{n}" for a, n in Counter(prediction["answers"]).most_common())
    ax.set_title(f"{prediction['question']}\nmodel: {prediction['predicted']} (VQA accuracy {prediction['accuracy']:.0%})\n"
                 f"annotators: {given}", fontsize=8)
    return ax

"""Sphinx configuration of the course's static site (``make site``; ``python tools/course_site.py build``).

The site shows the notebooks as executed copies: ``tools/course_site.py`` stages this folder and the executed
notebooks (``build/executed/``) in ``build/site/src`` and runs Sphinx there. Sphinx itself never runs a
notebook (``nb_execution_mode = "off"``), so a notebook is executed once, by the test stage or by
``tools/course_site.py execute``. Everything the pages load ships with the site: no fonts, scripts or
images from elsewhere (``tools/course_site.py check`` fails on any).
"""

project = "vlp-course"
author = "the vlp-course authors"
copyright = "the vlp-course authors, MIT licence"
html_title = "vlp-course"

extensions = ["myst_nb"]
root_doc = "index"
exclude_patterns = ["_build", "**/.ipynb_checkpoints", "runtimes.md"]

# Notebooks arrive executed; Sphinx only renders them.
nb_execution_mode = "off"
# The masking explorer (notebook 9) is a live widget only in a kernel; the page keeps the printed
# table and drops the widget view rather than load the widget manager from a CDN.
nb_ipywidgets_js = {}
nb_merge_streams = True
myst_heading_anchors = 3

html_theme = "sphinx_book_theme"
html_static_path = ["_static"]
html_theme_options = {
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "use_download_button": True,
    "navigation_with_keys": False,
}
html_last_updated_fmt = None
html_show_sourcelink = False

"""Sphinx configuration of the course website (``make book``): the ten notebooks as a student gets them.

``python -m labkit book`` writes the student's view of every notebook next to this file's copy in
build/book/src (exercise cells blank, every other cell with its stored outputs) and runs Sphinx
with MyST-NB on it. Nothing is executed; MathJax is served from the site itself, so the maths
renders without network access.
"""
project = "labkit: FlashAttention from softmax up, and linear systems"
author = "the labkit course"
extensions = ["myst_nb", "sphinx-mathjax-offline"]
nb_execution_mode = "off"  # the stored outputs, never a re-execution
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_dmath_double_inline = True
html_theme = "sphinx_book_theme"
html_title = "labkit"
html_theme_options = {"show_toc_level": 2, "use_download_button": True, "home_page_in_toc": True}
exclude_patterns = ["_build"]
suppress_warnings = ["mystnb.unknown_mime_type"]

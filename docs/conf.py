"""Sphinx configuration of the owp documentation site (built by .ci/run with -W)."""

from __future__ import annotations

project = "owp"
author = "owp developers"
copyright = "owp developers, Apache-2.0"
release = "0.1.0"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinxarg.ext",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3  # links to `page.md#a-heading`, as GitHub writes them

html_theme = "furo"
html_title = "owp — open-world object proposals"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# owp's docstrings write "Returns:" as prose (a dict's keys, a shape), not "type: description".
napoleon_custom_sections = ["Returns"]
# Help texts name options ("--out"): keep "--" as typed, not an en dash.
smartquotes = False

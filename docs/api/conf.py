"""Sphinx configuration of the API reference (built by `tox -e docs`, warnings are errors)."""

from __future__ import annotations

import conceptspace

project = "conceptspace"
version = release = conceptspace.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # signatures carry the types; the docstrings say why
# scikit-learn adds metadata-routing setters to every estimator; they are sklearn's API, documented there
_SKLEARN_ROUTING = ", ".join(f"set_{m}_request" for m in ("fit", "score", "predict", "transform", "partial_fit",
                                                             "decision_function", "predict_proba", "split"))
autodoc_default_options = {"members": True, "imported-members": True, "undoc-members": False,
                           "exclude-members": _SKLEARN_ROUTING}
nitpicky = False
html_theme = "alabaster"
exclude_patterns = ["_build"]
suppress_warnings = ["ref.python"]  # several names are re-exported by more than one subpackage

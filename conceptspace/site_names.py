"""The site vocabulary as text: ``embed``, ``layer.<i>``, ``final_norm`` and the ``unembed`` weight.

Why a module of its own in the foundation layer: a site name is read in several layers (a model maps it to a
module, a suite validates it, a test result derives its layer from it, the report labels axes with it), and
every one of them must read it the same way. Mapping a name onto a particular model's modules (ranges, missing
final norms) is the model layer's job (:func:`conceptspace.models.parse_site`); this module only knows the syntax.
"""

from __future__ import annotations

__all__ = ["EMBED", "FINAL_NORM", "LAYER_PREFIX", "UNEMBED", "is_site_name", "layer_site", "site_layer"]

EMBED = "embed"
FINAL_NORM = "final_norm"
UNEMBED = "unembed"
LAYER_PREFIX = "layer."


def layer_site(index: int) -> str:
    """The site name of block ``index`` (``layer.3``)."""
    return f"{LAYER_PREFIX}{int(index)}"


def site_layer(site: str | None) -> int | None:
    """Block index of ``"layer.<i>"`` (negative indices kept as written); None for any other site or None."""
    if site is not None and site.startswith(LAYER_PREFIX):
        tail = site[len(LAYER_PREFIX) :]
        if tail.lstrip("-").isdigit():
            return int(tail)
    return None


def is_site_name(site: str) -> bool:
    """True for a syntactically valid site name (whether a given model has it is checked by the model layer)."""
    return site in (EMBED, FINAL_NORM, UNEMBED) or site_layer(site) is not None

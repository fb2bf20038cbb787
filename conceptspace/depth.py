"""Layers named relative to a model's depth, so that one suite runs on a 6-block encoder and a 30-block decoder.

Why a module of its own in the foundation layer: a layer is named in suites, on the command line, in site
lists and in the Python API, and every one of them must turn a name into a block the same way; the rule is pure
arithmetic on the number of blocks, so it needs no model.

The rule (one rule everywhere):

* an **int** is a block index, as before: ``3`` is block 3, ``-1`` the last block;
* a **float in [0, 1]** is a fraction of depth: the ``n`` blocks split depth evenly, block ``i`` covering
  ``[i/n, (i+1)/n)``, and ``f`` names the block whose share contains it: ``min(floor(f * n), n - 1)``.
  ``0.0`` is the first block, ``1.0`` the last, ``0.5`` the block at mid-depth (block 15 of SmolLM2's 30,
  block 3 of MiniLM's 6). ``f`` is read as the decimal it is written as (``0.7`` is 7/10, not the binary float
  just below it), so ``0.7 * 90`` is exactly block 63 where a float product would give 62.99... and block 62;
* ``"all"`` is every block.

Beware the TOML/Python distinction this rests on: ``1`` is block 1, ``1.0`` is the last block.

A block's reported **depth** is ``i / (n - 1)`` (0 for the first block, 1 for the last; 0 for a one-block
model). It is the inverse of the rule: the fraction a result reports selects that same block again.

In a site list a fraction is written ``layer@<f>`` with a decimal point (``layer@0.5``, ``layer@1.0``), next to
the block form ``layer.<i>``: ``@`` reads "at depth", and the two spellings can never be confused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from conceptspace.errors import InvalidInputError
from conceptspace.site_names import is_site_name, site_layer

__all__ = [
    "DEPTH_PREFIX",
    "block_at",
    "block_depth",
    "depth_site",
    "is_fraction",
    "is_layer",
    "is_layers",
    "is_site_spec",
    "resolve_layer",
    "resolve_layers",
    "site_depth",
    "site_fraction",
]

DEPTH_PREFIX = "layer@"
_RULE = "a float in [0, 1] is a fraction of depth, min(floor(f * n_layers), n_layers - 1); an int a block index"


def is_fraction(value: Any) -> bool:
    """A float in [0, 1] (a fraction of depth); ints, bools and out-of-range floats are not fractions."""
    return isinstance(value, float) and 0.0 <= value <= 1.0


def is_layer(value: Any) -> bool:
    """One layer as a suite or the API may give it: a block index (int, negative from the end) or a fraction."""
    return (isinstance(value, int) and not isinstance(value, bool)) or is_fraction(value)


def is_layers(value: Any) -> bool:
    """``"all"`` or a non-empty list of layers (block indices and fractions may be mixed)."""
    return value == "all" or (isinstance(value, list) and bool(value) and all(is_layer(x) for x in value))


def _check_n_layers(n_layers: int) -> None:
    if not isinstance(n_layers, int) or n_layers < 1:
        raise InvalidInputError(f"a model has at least one block; got n_layers={n_layers!r}")


def block_at(fraction: float, n_layers: int) -> int:
    """The block at a fraction of depth: ``min(floor(f * n_layers), n_layers - 1)``, f read as written."""
    _check_n_layers(n_layers)
    if not is_fraction(fraction):
        raise InvalidInputError(
            f"depth fraction {fraction!r} is not a float in [0, 1] ({_RULE}); for a block index write an int"
        )
    exact = Fraction(repr(fraction))  # the decimal as written: 0.7 is 7/10, not 0.69999999999999996...
    return min(math.floor(exact * n_layers), n_layers - 1)


def block_depth(block: int, n_layers: int) -> float:
    """A block's relative depth ``i / (n_layers - 1)``: 0 first block, 1 last (0 for a one-block model)."""
    _check_n_layers(n_layers)
    if not 0 <= block < n_layers:
        raise InvalidInputError(f"block {block} does not exist (blocks 0..{n_layers - 1})")
    return 0.0 if n_layers == 1 else block / (n_layers - 1)


def resolve_layer(layer: Any, n_layers: int, *, model: str = "this model") -> int:
    """The block index (0..n_layers-1) of one layer given as an int index or a fraction, or an error saying why."""
    _check_n_layers(n_layers)
    if isinstance(layer, float):
        if not is_fraction(layer):
            raise InvalidInputError(
                f"layer {layer!r} is a float outside [0, 1]: {_RULE}. Write {int(layer)} for block {int(layer)}"
                if layer.is_integer() else f"layer {layer!r} is a float outside [0, 1]: {_RULE}"
            )
        return block_at(layer, n_layers)
    if not is_layer(layer):
        raise InvalidInputError(f"layer {layer!r} is neither a block index (int) nor a fraction of depth ({_RULE})")
    if not -n_layers <= layer < n_layers:
        raise InvalidInputError(
            f"layer {layer} does not exist in {model} (blocks 0..{n_layers - 1}, or -1 for the last); name layers "
            "by depth to fit any model: 0.5 is the middle block, 1.0 the last"
        )
    return int(layer) % n_layers


def resolve_layers(layers: Any, n_layers: int, *, model: str = "this model") -> list[int]:
    """Block indices of ``"all"`` or a list of layers, in the order given, each block once.

    Two fractions can land on one block of a shallow model (0.0 and 0.1 are both block 0 of a 6-block model);
    the block is then read once, so that no test is run, and corrected for, twice.
    """
    if layers == "all":
        _check_n_layers(n_layers)
        return list(range(n_layers))
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
        raise InvalidInputError(f"layers must be 'all' or a list of block indices / depth fractions; got {layers!r}")
    if not layers:
        raise InvalidInputError("no layers given: name at least one block index or depth fraction, or 'all'")
    return list(dict.fromkeys(resolve_layer(x, n_layers, model=model) for x in layers))


def site_fraction(site: str) -> float | None:
    """The fraction of a ``layer@<f>`` site (a decimal point required), None for any other string.

    ``layer@1`` is refused rather than guessed: it could mean block 1 (``layer.1``) or the last block
    (``layer@1.0``).
    """
    if not isinstance(site, str) or not site.startswith(DEPTH_PREFIX):
        return None
    tail = site[len(DEPTH_PREFIX):]
    if "." not in tail:
        raise InvalidInputError(
            f"site {site!r}: a depth needs a decimal point (layer@0.5, layer@1.0); for block {tail} write layer.{tail}"
        )
    try:
        value = float(tail)
    except ValueError:
        raise InvalidInputError(f"site {site!r}: {tail!r} is not a number; write e.g. layer@0.5") from None
    if not is_fraction(value):
        raise InvalidInputError(f"site {site!r}: the depth must be in [0, 1] (layer@0.0 first block, layer@1.0 last)")
    return value


def depth_site(site: str, n_layers: int) -> str:
    """``layer@<f>`` resolved to ``layer.<i>`` on a model with ``n_layers`` blocks; any other site unchanged."""
    fraction = site_fraction(site)
    return site if fraction is None else f"layer.{block_at(fraction, n_layers)}"


def is_site_spec(site: Any) -> bool:
    """A site as a suite or the API may name it: a site name (``embed``, ``layer.3``, ...) or ``layer@<f>``."""
    if not isinstance(site, str):
        return False
    if is_site_name(site):
        return True
    try:
        return site_fraction(site) is not None
    except InvalidInputError:
        return False


def site_depth(site: str | None, n_layers: int) -> float | None:
    """The relative depth of a ``layer.<i>`` site (:func:`block_depth`); None for ``embed``, ``final_norm``,
    ``unembed`` and the lexical baseline, which are not blocks (their site name says where they are)."""
    index = site_layer(site)
    if index is None:
        return None
    index = index + n_layers if index < 0 else index
    return block_depth(index, n_layers) if 0 <= index < n_layers else None

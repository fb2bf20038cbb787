"""One vocabulary of activation sites across architectures.

Every analysis in conceptspace names what it reads with these strings, never with an architecture's module
path, so the same suite runs on a Llama-style decoder, a GPT-2-style decoder and a BERT-style encoder:

``embed``
    output of the token-embedding lookup (token vectors only; learned absolute position embeddings, where an
    architecture has them, are added later and are not part of this site).
``layer.<i>``
    output of block ``i`` (0-based), i.e. the residual stream after that block. ``-1`` style negative indices
    are accepted by :func:`parse_site` and resolved against the model's depth, and so are fractions of depth:
    ``layer@0.5`` or the float ``0.5`` (the rule is in :mod:`conceptspace.depth`).
``final_norm``
    output of the final normalisation: the context vector that the unembedding reads. BERT-style encoders
    normalise inside every block (post-LN) and have no such site.

The unembedding matrix (a weight, not an activation) is reached with ``ConceptModel.unembedding()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from conceptspace.depth import block_at, is_fraction, site_fraction
from conceptspace.errors import InvalidInputError, UnsupportedArchitectureError
from conceptspace.site_names import EMBED, FINAL_NORM, LAYER_PREFIX

# Module paths, in the order they are tried, for each standard site. Adding an architecture means adding its
# paths here; nothing else in the toolkit knows module names.
_CANDIDATE_PATHS: dict[str, tuple[str, ...]] = {
    "embed": (
        "model.embed_tokens",  # Llama, Mistral, Qwen, SmolLM
        "transformer.wte",  # GPT-2, GPT-J
        "gpt_neox.embed_in",  # Pythia
        "model.decoder.embed_tokens",  # OPT
        "embeddings.word_embeddings",  # BertModel
        "bert.embeddings.word_embeddings",  # Bert*For* heads
    ),
    "layers": (
        "model.layers",
        "transformer.h",
        "gpt_neox.layers",
        "model.decoder.layers",
        "encoder.layer",
        "bert.encoder.layer",
    ),
    "final_norm": (
        "model.norm",
        "transformer.ln_f",
        "gpt_neox.final_layer_norm",
        "model.decoder.final_layer_norm",
    ),
}


@dataclass(frozen=True)
class SiteMap:
    """Where the standard sites live inside one loaded model."""

    embed: str
    layers: str
    final_norm: str | None
    n_layers: int

    def available(self) -> tuple[str, ...]:
        """Every site name this model can be read at, in forward order."""
        names = [EMBED, *(f"{LAYER_PREFIX}{i}" for i in range(self.n_layers))]
        if self.final_norm is not None:
            names.append(FINAL_NORM)
        return tuple(names)


def _has_path(module: torch.nn.Module, path: str) -> bool:
    current: object = module
    for part in path.split("."):
        if not hasattr(current, part):
            return False
        current = getattr(current, part)
    return isinstance(current, torch.nn.Module)


def get_submodule(module: torch.nn.Module, path: str) -> torch.nn.Module:
    """The submodule at a dotted path (a thin, typed wrapper that keeps call sites short)."""
    return module.get_submodule(path)


def discover_sites(model: torch.nn.Module) -> SiteMap:
    """Map a Hugging Face model's modules to the standard sites, or say precisely which are missing."""
    found: dict[str, str | None] = {}
    for site, paths in _CANDIDATE_PATHS.items():
        found[site] = next((p for p in paths if _has_path(model, p)), None)
    missing = [site for site in ("embed", "layers") if found[site] is None]
    if missing:
        children = ", ".join(name for name, _ in model.named_children()) or "(none)"
        raise UnsupportedArchitectureError(
            f"{type(model).__name__} is not supported: no module found for the required site(s) "
            f"{', '.join(missing)}. Top-level modules are: {children}. Known layouts: "
            + "; ".join(f"{site}: {' | '.join(paths)}" for site, paths in _CANDIDATE_PATHS.items())
        )
    layers_path = found["layers"]
    assert layers_path is not None and found["embed"] is not None
    layers = get_submodule(model, layers_path)
    if not isinstance(layers, torch.nn.ModuleList) or len(layers) == 0:
        raise UnsupportedArchitectureError(
            f"{type(model).__name__}: {layers_path} is not a non-empty ModuleList of blocks"
        )
    return SiteMap(embed=found["embed"], layers=layers_path, final_norm=found["final_norm"], n_layers=len(layers))


def parse_site(site: str | int | float, site_map: SiteMap) -> str:
    """Normalise a user's site (``3``, ``-1``, ``0.5``, ``"layer.3"``, ``"layer@0.5"``, ``"embed"``) to its canonical
    name, or explain. A float is a fraction of depth (:func:`conceptspace.depth.block_at`)."""
    n = site_map.n_layers
    if isinstance(site, bool):  # bool is an int; True as a layer is always a mistake
        raise InvalidInputError(f"site {site!r} is not a layer index or site name")
    if isinstance(site, float):
        if not is_fraction(site):
            raise InvalidInputError(f"site {site!r}: a float is a fraction of depth in [0, 1]; a block index is an int")
        return f"{LAYER_PREFIX}{block_at(site, n)}"
    if isinstance(site, int):
        index = site + n if site < 0 else site
        if not 0 <= index < n:
            raise InvalidInputError(
                f"layer {site} is out of range: this model has {n} layers, valid indices are 0..{n - 1} "
                f"(or -{n}..-1 from the end)"
            )
        return f"{LAYER_PREFIX}{index}"
    if not isinstance(site, str):
        raise InvalidInputError(f"site {site!r} must be an int layer index or a site name string")
    text = site.strip()
    fraction = site_fraction(text)
    if fraction is not None:
        return f"{LAYER_PREFIX}{block_at(fraction, n)}"
    if text.lstrip("-").isdigit():
        return parse_site(int(text), site_map)
    if "." in text and text.replace(".", "", 1).lstrip("-").isdigit():  # "0.5" from a command line: a fraction
        return parse_site(float(text), site_map)
    if text.startswith(LAYER_PREFIX) and text[len(LAYER_PREFIX) :].lstrip("-").isdigit():
        return parse_site(int(text[len(LAYER_PREFIX) :]), site_map)
    if text == EMBED:
        return EMBED
    if text == FINAL_NORM:
        if site_map.final_norm is None:
            raise InvalidInputError(
                "this model has no final_norm site (BERT-style encoders normalise inside every block); "
                f"read the last block instead: {LAYER_PREFIX}{n - 1}"
            )
        return FINAL_NORM
    raise InvalidInputError(
        f"unknown site {site!r}: use 'embed', 'layer.<i>' with i in 0..{n - 1}, 'layer@<f>' with a depth f in "
        "[0, 1], an int index, or 'final_norm'"
    )


def parse_sites(sites: Iterable[str | int | float] | str | int | float | None, site_map: SiteMap) -> tuple[str, ...]:
    """Canonical site names in forward order, without duplicates. ``None`` or ``"all"`` means every site."""
    if sites is None or sites == "all":
        return site_map.available()
    if isinstance(sites, (str, int, float)):
        sites = [sites]
    parsed = {parse_site(s, site_map) for s in sites}
    if not parsed:
        raise InvalidInputError("no sites requested: pass at least one layer index or site name")
    order = {name: i for i, name in enumerate(site_map.available())}
    return tuple(sorted(parsed, key=order.__getitem__))


def module_path(site: str, site_map: SiteMap) -> str:
    """The module whose output is the site."""
    if site == EMBED:
        return site_map.embed
    if site == FINAL_NORM:
        assert site_map.final_norm is not None
        return site_map.final_norm
    return f"{site_map.layers}.{int(site[len(LAYER_PREFIX) :])}"


def layer_index(site: str) -> int | None:
    """The block index of a ``layer.<i>`` site, else None."""
    return int(site[len(LAYER_PREFIX) :]) if site.startswith(LAYER_PREFIX) else None


def deepest(sites: Sequence[str], site_map: SiteMap) -> str:
    """The last site in forward order: after it, the forward can stop."""
    order = {name: i for i, name in enumerate(site_map.available())}
    return max(sites, key=order.__getitem__)

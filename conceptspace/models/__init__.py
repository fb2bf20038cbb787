"""Models: load a language model once and give every later layer one way to reach it.

Why a layer of its own: everything above (concept data aside) needs a model's tokenizer, its activation sites
under one vocabulary (``embed``, ``layer.<i>``, ``final_norm``), its static weights and, for controls, its
untrained twin, whether the weights sit here, in a GGUF file, or behind NDIF. nnsight is imported only here and
in the trace bodies of ``activations`` and ``analyses.causal``, so the rest of the code never meets its tracing
rules. Public: :func:`load_model`, :class:`ConceptModel`, the site vocabulary, and the weight readers.
"""

from __future__ import annotations

from conceptspace.models._bundled import (
    BUNDLED_MODELS,
    DEFAULT_MODEL,
    BundledModel,
    bundled_model_path,
    installed_models,
)
from conceptspace.models._gguf import converted_folder
from conceptspace.models._load import load_model, load_tokenizer
from conceptspace.models._model import ConceptModel, ModelIdentity, RemoteMode
from conceptspace.models._sites import (
    EMBED,
    FINAL_NORM,
    LAYER_PREFIX,
    SiteMap,
    deepest,
    layer_index,
    parse_site,
    parse_sites,
)
from conceptspace.models._weights import (
    embedding_rows,
    final_norm,
    output_head,
    unembedding_matrix,
    unembedding_rows,
    vocab_size,
)

__all__ = [
    "BUNDLED_MODELS",
    "DEFAULT_MODEL",
    "EMBED",
    "FINAL_NORM",
    "LAYER_PREFIX",
    "BundledModel",
    "ConceptModel",
    "ModelIdentity",
    "RemoteMode",
    "SiteMap",
    "bundled_model_path",
    "converted_folder",
    "deepest",
    "embedding_rows",
    "final_norm",
    "installed_models",
    "layer_index",
    "load_model",
    "load_tokenizer",
    "output_head",
    "parse_site",
    "parse_sites",
    "unembedding_matrix",
    "unembedding_rows",
    "vocab_size",
]

"""Extract activations at any set of sites and a chosen position, batched, through nnsight, cached on disk.

Why it is built this way:

* Texts are tokenized once, sorted by length and batched by a token budget, so padding stays small (naive
  batching of short sentences ran ~1.85x more padded than real tokens).
* Padding and positions are done here, not by the tokenizer or nnsight: rows are padded on one side with
  explicit ``position_ids``, and every position is resolved on the unpadded sequence. A text therefore gives the
  same vector alone or in any batch (a test holds this to 1e-4), the bug class of nnsight #672.
* One nnsight trace per batch reads the sites in forward order, reduces them to the requested position inside
  the trace (so a remote NDIF run downloads only those slices), and stops the forward after the deepest site
  (skipping the unembedding made a forward ~1.25x faster on a 2-core CPU).
* Each finished batch is a shard on disk; a killed run resumes from its shards; a finished run is consolidated
  into memory-mapped arrays. See ``conceptspace.activations._cache``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

import conceptspace.activations._cache as cache_store
import conceptspace.activations._counters as counters
from conceptspace.activations._host_memory import release_free_heap
from conceptspace.activations._positions import Position, pool_plan, token_span
from conceptspace.activations._staging import HostStaging
from conceptspace.depth import DEPTH_PREFIX, block_at, site_fraction
from conceptspace.errors import InvalidInputError, NonFiniteActivationError
from conceptspace.models import ConceptModel
from conceptspace.models._nnsight import import_nnsight
from conceptspace.models._sites import parse_sites
from conceptspace.utils.html_table import html_table

log = logging.getLogger(__name__)

_STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class TokenizedTexts:
    """Token ids of every text, unpadded, plus the token span of each text's concept word when asked for."""

    input_ids: list[list[int]]
    span_tokens: list[tuple[int, int]] | None

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]


_REPR_SITES = 6  # sites listed by repr(); _repr_html_ lists all


@dataclass(repr=False)
class Activations:
    """Activations of ``n_items`` texts at several sites.

    ``acts["layer.12"]`` is an array ``(n_items, d)`` for pooled positions, or ``(total_tokens, d)`` for
    ``all`` (rows of item ``i`` are ``offsets[i]:offsets[i + 1]``; :meth:`tokens` slices them). Arrays from the
    cache are read-only memory maps, so opening a large extraction costs nothing until values are touched.
    """

    sites: tuple[str, ...]
    position: str
    n_items: int
    d_model: int
    model: Mapping[str, Any]
    arrays: Mapping[str, np.ndarray]
    offsets: np.ndarray | None = None
    folder: Path | None = None
    storage_dtype: str = "float32"
    token_counts: np.ndarray | None = field(default=None, repr=False)

    def __getitem__(self, site: str | int | float) -> np.ndarray:
        if isinstance(site, float) or (isinstance(site, str) and site.startswith(DEPTH_PREFIX)):
            name = self._depth_site(site)
        else:
            name = f"layer.{site + len(self._layers()) if site < 0 else site}" if isinstance(site, int) else site
        if name not in self.arrays:
            raise KeyError(f"site {site!r} was not extracted; available: {', '.join(self.sites)}")
        array = self.arrays[name]
        if self.storage_dtype == "bfloat16":  # stored as raw 16-bit patterns
            return torch.from_numpy(np.array(array)).view(torch.bfloat16).float().numpy()
        return array

    def _depth_site(self, site: str | float) -> str:
        """``0.5`` or ``"layer@0.5"``: the block at that fraction of the model's depth (:mod:`conceptspace.depth`)."""
        n_layers = self.model.get("n_layers") if isinstance(self.model, Mapping) else None
        if not isinstance(n_layers, int):
            raise InvalidInputError(f"site {site!r} is a fraction of depth, but these activations do not record the "
                                    "model's number of blocks; name the block (layer.<i>)")
        fraction = site_fraction(site) if isinstance(site, str) else site
        assert fraction is not None  # a string here starts with "layer@": a fraction, or site_fraction raised
        return f"layer.{block_at(fraction, n_layers)}"

    def _layers(self) -> list[str]:
        return [s for s in self.sites if s.startswith("layer.")]

    def stack(self, sites: Sequence[str | int | float] | None = None) -> np.ndarray:
        """``(n_sites, n_items, d)`` float32 array: the shape the batched probes take."""
        chosen = list(sites) if sites is not None else list(self.sites)
        return np.stack([np.asarray(self[s], dtype=np.float32) for s in chosen])

    def tokens(self, item: int, site: str) -> np.ndarray:
        """Every real token's vector of one item (``all`` extractions only)."""
        if self.offsets is None:
            raise InvalidInputError(f"tokens() needs position='all'; this extraction is {self.position!r}")
        return self[site][self.offsets[item] : self.offsets[item + 1]]

    @property
    def layer_sites(self) -> tuple[str, ...]:
        return tuple(self._layers())

    def _site_rows(self) -> list[list[str]]:
        """``[site, shape, dtype]`` per site, read from array metadata (no values are loaded)."""
        return [[s, str(tuple(self.arrays[s].shape)), self.storage_dtype] for s in self.sites]

    def _headline(self) -> str:
        where = f"cached at {self.folder}" if self.folder is not None else "in memory (not cached)"
        name = self.model.get("name", "?") if isinstance(self.model, Mapping) else "?"
        return (f"Activations({self.n_items} items, position={self.position!r}, d_model={self.d_model}, "
                f"dtype={self.storage_dtype}, model={name!r}, {where})")

    def __repr__(self) -> str:
        """The shape of the extraction, never the arrays (a memory-mapped array prints every row it has)."""
        rows = self._site_rows()
        shown = [f"  {site}: {shape}" for site, shape, _ in rows[:_REPR_SITES]]
        if len(rows) > _REPR_SITES:
            shown.append(f"  ... {len(rows) - _REPR_SITES} more sites ({', '.join(self.sites[-2:])} last)")
        return "\n".join([self._headline(), *shown])

    def _repr_html_(self) -> str:
        return html_table(["site", "shape", "dtype"], self._site_rows(), self._headline())


# ---------------------------------------------------------------------------------------------------------
# input handling
# ---------------------------------------------------------------------------------------------------------


def _as_texts_and_spans(
    items: Any, spans: Sequence[tuple[int, int]] | None
) -> tuple[list[str], list[tuple[int, int]] | None]:
    """Accept a list of strings or anything with ``.texts`` (a ConceptSet), and validate every item."""
    texts = list(items.texts) if hasattr(items, "texts") else items
    if spans is None and hasattr(items, "spans"):
        spans = items.spans
    if isinstance(texts, str):
        raise InvalidInputError("texts must be a list of strings, not one string: wrap it as [text]")
    texts = list(texts)
    if not texts:
        raise InvalidInputError("no texts to extract: the list is empty")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInputError(f"item {index} is {type(text).__name__} {text!r}, not a string")
        if not text.strip():
            raise InvalidInputError(f"item {index} is an empty or blank string")
    if spans is not None:
        spans = [(int(a), int(b)) for a, b in spans]
        if len(spans) != len(texts):
            raise InvalidInputError(f"{len(spans)} spans for {len(texts)} texts: give one (start, end) per text")
    return texts, spans


def tokenize(
    model: ConceptModel,
    texts: Sequence[str],
    *,
    spans: Sequence[tuple[int, int]] | None = None,
    truncate: bool = False,
) -> TokenizedTexts:
    """Tokenize without padding; map character spans to token spans; enforce the model's context length.

    Over-long texts are an error by default (silently cutting a text changes which token is "last"); with
    ``truncate=True`` they keep their first ``max_length`` tokens and a warning says how many were cut.
    """
    encoded = model.tokenizer(
        list(texts), add_special_tokens=True, return_offsets_mapping=spans is not None, truncation=False
    )
    input_ids: list[list[int]] = [list(ids) for ids in encoded["input_ids"]]
    limit = model.max_length
    too_long = [i for i, ids in enumerate(input_ids) if len(ids) > limit]
    if too_long and not truncate:
        first = too_long[0]
        raise InvalidInputError(
            f"{len(too_long)} text(s) exceed the model's context of {limit} tokens (item {first} has "
            f"{len(input_ids[first])}); shorten them or pass truncate=True to keep the first {limit} tokens"
        )
    if too_long:
        warnings.warn(f"truncated {len(too_long)} text(s) to {limit} tokens", stacklevel=3)
        input_ids = [ids[:limit] for ids in input_ids]
    empty = [i for i, ids in enumerate(input_ids) if not ids]
    if empty:
        raise InvalidInputError(f"item {empty[0]} tokenizes to no tokens: {texts[empty[0]]!r}")
    span_tokens = None
    if spans is not None:
        span_tokens = []
        for index, (text, span) in enumerate(zip(texts, spans, strict=True)):
            first, stop = token_span(encoded["offset_mapping"][index], span, item=index, text=text)
            if stop > len(input_ids[index]):
                raise InvalidInputError(f"item {index}: span {span} was cut off by truncation")
            span_tokens.append((first, stop))
    return TokenizedTexts(input_ids, span_tokens)


def length_sorted_batches(lengths: Sequence[int], batch_size: int, max_batch_tokens: int) -> list[list[int]]:
    """Item indices grouped into batches of similar length (longest first, so memory peaks early).

    A batch closes when it holds ``batch_size`` items or its padded size would pass ``max_batch_tokens``.
    The grouping depends only on the lengths, so a resumed run rebuilds exactly the same batches.
    """
    if batch_size < 1 or max_batch_tokens < 1:
        raise InvalidInputError("batch_size and max_batch_tokens must be positive")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        padded = lengths[current[0]] * (len(current) + 1) if current else lengths[index]
        if current and (len(current) >= batch_size or padded > max_batch_tokens):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def padding_stats(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> dict[str, float]:
    """Real vs padded token counts of a batching (the ratio is what length sorting buys)."""
    real = sum(lengths)
    padded = sum(max(lengths[i] for i in batch) * len(batch) for batch in batches)
    return {"real_tokens": real, "padded_tokens": padded, "padded_over_real": padded / max(real, 1)}


# ---------------------------------------------------------------------------------------------------------
# one batch through nnsight
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchInputs:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    starts: torch.Tensor
    lengths: torch.Tensor
    span_first: torch.Tensor | None
    span_stop: torch.Tensor | None


def build_batch(model: ConceptModel, tokens: TokenizedTexts, indices: Sequence[int], padding_side: str) -> BatchInputs:
    """Pad one batch ourselves, with position ids that count real tokens only (either padding side)."""
    lengths = [len(tokens.input_ids[i]) for i in indices]
    width = max(lengths)
    pad_id = model.tokenizer.pad_token_id
    if pad_id is None:
        pad_id = model.tokenizer.eos_token_id or 0
    ids = torch.full((len(indices), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(indices), width), dtype=torch.long)
    starts = []
    for row, (index, length) in enumerate(zip(indices, lengths, strict=True)):
        start = width - length if padding_side == "left" else 0
        ids[row, start : start + length] = torch.tensor(tokens.input_ids[index])
        mask[row, start : start + length] = 1
        starts.append(start)
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    span_first = span_stop = None
    if tokens.span_tokens is not None:
        span_first = torch.tensor([tokens.span_tokens[i][0] for i in indices])
        span_stop = torch.tensor([tokens.span_tokens[i][1] for i in indices])
    device = model.device
    return BatchInputs(
        ids.to(device),
        mask.to(device),
        positions.to(device),
        torch.tensor(starts, device=device),
        torch.tensor(lengths, device=device),
        None if span_first is None else span_first.to(device),
        None if span_stop is None else span_stop.to(device),
    )


def trace_batch(
    model: ConceptModel,
    batch: BatchInputs,
    sites: Sequence[str],
    position: Position,
    staging: HostStaging | None = None,
) -> dict[str, torch.Tensor]:
    """Run one nnsight trace and return each site reduced to ``position``, in host memory.

    Sites are read in forward order and the forward stops after the deepest one. The body uses only torch and
    nnsight (a remote worker has no conceptspace); the reduction follows the :class:`PoolPlan`.
    With ``staging`` each site is copied into a preallocated host buffer the moment it exists (on a side CUDA
    stream when the model is on a GPU); the returned tensors are then views of those buffers, valid until the
    next call with the same staging. For ``all`` the padded batch comes back whole; callers strip the padding.
    """
    nnsight = import_nnsight()
    traced = model.traced()
    envoys = [model.envoy(site) for site in sites]
    width = batch.input_ids.shape[1]
    plan = pool_plan(position, batch.starts, batch.lengths, batch.span_first, batch.span_stop, width)
    mode, rows, cols, keep, counts = plan.mode, plan.rows, plan.cols, plan.mask, plan.counts
    buffers: list[torch.Tensor] = []
    side = None
    if staging is not None and not model.remote:
        shape = (
            (batch.input_ids.shape[0], width, model.d_model)
            if mode == "whole"
            else (batch.input_ids.shape[0], model.d_model)
        )
        buffers = staging.buffers({site: shape for site in sites}, model.dtype)
        side = staging.stream
    staged = bool(buffers)
    with torch.inference_mode():
        with traced.trace(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            remote=model.remote,
        ) as tracer:
            captured = nnsight.save([])
            for number, envoy in enumerate(envoys):
                hidden = envoy.output
                if isinstance(hidden, tuple):
                    hidden = hidden[0]
                # client tensors follow the hidden state (a no-op here; on NDIF the weights sit on a GPU)
                if mode == "gather":
                    hidden = hidden[rows.to(hidden.device), cols.to(hidden.device)]
                elif mode == "weighted":
                    hidden = hidden.masked_fill(~keep.to(hidden.device)[..., None], 0).sum(1) / counts.to(
                        hidden.device, hidden.dtype
                    )[:, None]
                if not staged:
                    captured.append(hidden.cpu())
                elif side is None:
                    buffers[number].copy_(hidden)
                else:  # overlap the device-to-host copy with the layers still to run
                    side.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(side):
                        buffers[number].copy_(hidden, non_blocking=True)
                    hidden.record_stream(side)
            tracer.stop()
    if staged:
        assert staging is not None
        staging.wait()
        return dict(zip(sites, buffers, strict=True))
    model.record_download(captured)
    return dict(zip(sites, captured, strict=True))


# ---------------------------------------------------------------------------------------------------------
# the public entry point
# ---------------------------------------------------------------------------------------------------------


def _content_hash(texts: Sequence[str], spans: Sequence[tuple[int, int]] | None) -> str:
    digest = hashlib.sha256()
    for index, text in enumerate(texts):
        digest.update(json.dumps([text, spans[index] if spans is not None else None]).encode())
    return digest.hexdigest()


def _storage_dtype(model: ConceptModel, dtype: str | None) -> torch.dtype:
    if dtype is None:
        return model.dtype if model.dtype in _STORAGE_DTYPES.values() else torch.float32
    if dtype not in _STORAGE_DTYPES:
        raise InvalidInputError(f"unknown storage dtype {dtype!r}; use one of {', '.join(_STORAGE_DTYPES)}")
    return _STORAGE_DTYPES[dtype]


def _batches_to_extract(
    model: ConceptModel,
    tokens: TokenizedTexts,
    batches: list[list[int]],
    done: set[int],
    sites: Sequence[str],
    position: Position,
    padding_side: str,
    storage: torch.dtype,
    staging: HostStaging | None,
) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
    """Yield (batch number, tensors to store) for every batch not already on disk.

    With staging the yielded tensors may be views of reused host buffers: the caller must store them before
    asking for the next batch (writing a shard does).
    """
    for number, indices in enumerate(batches):
        if number in done:
            continue
        batch = build_batch(model, tokens, indices, padding_side)
        values = trace_batch(model, batch, sites, position, staging)
        counters.record_forward(len(indices))
        if position.kind == "all":  # strip padding: concatenate each row's real tokens
            starts, lengths = batch.starts.cpu().tolist(), batch.lengths.cpu().tolist()
            values = {
                site: torch.cat([t[row, s : s + n] for row, (s, n) in enumerate(zip(starts, lengths, strict=True))])
                for site, t in values.items()
            }
        else:  # one row per item
            lengths = [1] * len(indices)
        _check_finite_rows(values, indices, lengths)
        stored = {site: t.to(storage) for site, t in values.items()}
        stored["__index__"] = torch.tensor(indices, dtype=torch.long)
        yield number, stored


def _check_finite_rows(values: Mapping[str, torch.Tensor], indices: Sequence[int], lengths: Sequence[int]) -> None:
    """Raise, naming the items, if any row is NaN or inf; item i owns ``lengths[i]`` consecutive rows."""
    bounds = np.cumsum([0, *lengths])
    for site, tensor in values.items():
        finite_rows = torch.isfinite(tensor.float()).all(dim=1)
        if not bool(finite_rows.all()):
            bad_rows = torch.nonzero(~finite_rows).flatten().tolist()
            bad = sorted({indices[int(np.searchsorted(bounds, r, side="right") - 1)] for r in bad_rows})
            raise NonFiniteActivationError(
                f"NaN or inf activations at site {site} for item(s) {bad[:10]}; nothing was cached. "
                "Check the model's dtype (float16 overflows are common: try dtype='float32' or 'bfloat16')."
            )


def extract(
    model: ConceptModel,
    texts: Any,
    *,
    sites: Sequence[str | int] | str | int | None = None,
    position: str | Position = "last",
    spans: Sequence[tuple[int, int]] | None = None,
    batch_size: int = 32,
    max_batch_tokens: int = 8192,
    dtype: str | None = None,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    padding_side: str = "right",
    truncate: bool = False,
    progress: bool = True,
    host_staging: bool | None = None,
    superset: bool | None = None,
) -> Activations:
    """Activations of ``texts`` at ``sites`` (default: every site) and ``position``.

    ``texts`` is a list of strings or a ConceptSet (its texts and spans are used). Span positions need one
    character span ``(start, end)`` per text. With ``cache=True`` results are stored under
    ``CONCEPTSPACE_CACHE`` keyed by the model identity, the texts, sites, position and dtype, and an
    interrupted run resumes; ``cache=False`` keeps everything in memory. ``host_staging`` copies each site into
    reused host buffers as soon as it is computed (default: on for a local model on a CUDA GPU, where the copies
    then overlap the forward on a side stream; see ``conceptspace.activations._staging``).

    ``superset``: for a pooled position (not ``all``) with the cache on, a request whose exact entry is missing
    is served from a superset entry (every site up to some depth) at the same texts, spans, position, dtype and
    truncation when one holds its sites (no forward pass); with ``superset=True`` a miss extracts every site up
    to the deepest requested one in the same forward (which stops there anyway) and caches that entry, so later
    requests of those texts at any sites no deeper run no forward. ``None`` follows
    ``CONCEPTSPACE_EXTRACT_SUPERSET``, else the process default (on inside the suite runner, off otherwise; see
    ``conceptspace.activations._counters``).
    """
    pos = Position.parse(position)
    if padding_side not in {"left", "right"}:
        raise InvalidInputError(f"padding_side must be 'left' or 'right', not {padding_side!r}")
    text_list, span_list = _as_texts_and_spans(texts, spans)
    if pos.kind == "span" and span_list is None:
        raise InvalidInputError(f"position {pos} needs spans: pass spans=[(start, end), ...], one per text")
    chosen_sites = parse_sites(sites, model.site_map)
    storage = _storage_dtype(model, dtype)
    storage_name = str(storage).split(".")[-1]
    tokens = tokenize(model, text_list, spans=span_list if pos.kind == "span" else None, truncate=truncate)
    lengths = tokens.lengths
    batches = length_sorted_batches(lengths, batch_size, max_batch_tokens)
    parts = {
        "model": model.identity.key(),
        "texts": _content_hash(text_list, span_list if pos.kind == "span" else None),
        "position": str(pos),
        "dtype": storage_name,
        "truncate": truncate,
    }
    key = cache_store.cache_key({**parts, "sites": list(chosen_sites)})
    counters.record_request(len(text_list))
    root = cache_store.cache_root(cache_dir) if cache else Path(tempfile.mkdtemp(prefix="conceptspace-"))
    try:
        requested, prefixes = chosen_sites, _covering_prefixes(chosen_sites, model.site_map.available())
        if cache and pos.kind != "all":
            keys = [cache_store.cache_key({**parts, "sites": list(prefix)}) for prefix in prefixes]
            served = _open_exact_or_superset(root, key, dict(zip(keys, prefixes, strict=True)), tokens, chosen_sites,
                                             pos, storage_name)
            if served is not None:
                counters.record_cache_hit()
                return served
            if counters.superset_wanted(superset, remote=bool(model.remote)):
                chosen_sites, key = prefixes[0], keys[0]
        if host_staging is None:
            host_staging = model.device.type == "cuda" and not model.remote
        staging = HostStaging(model.device) if host_staging else None
        result = _extract_into(
            model, tokens, batches, key, root, chosen_sites, pos, padding_side, storage, storage_name, progress, staging
        )
        result = _only_sites(result, requested)
        if not cache:  # copy out of the temporary folder before it goes
            result.arrays = {name: np.array(array) for name, array in result.arrays.items()}
            result.offsets = None if result.offsets is None else np.array(result.offsets)
            result.folder = None
        return result
    finally:
        if not cache:
            shutil.rmtree(root, ignore_errors=True)


def _covering_prefixes(sites: tuple[str, ...], every_site: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Every forward-order prefix of the model's sites that holds ``sites``, shortest first.

    A superset entry is the prefix that ends at the deepest requested site: the forward stops there anyway, so
    saving every earlier site costs only the copies (BENCHMARKS.md), never extra blocks. The last prefix is
    every site, the entry of ``sites=None``.
    """
    deepest = max(every_site.index(site) for site in sites)
    return [every_site[: end + 1] for end in range(deepest, len(every_site))]


def _open_exact_or_superset(
    root: Path,
    key: str,
    supersets: Mapping[str, tuple[str, ...]],
    tokens: TokenizedTexts,
    sites: tuple[str, ...],
    position: Position,
    storage_name: str,
) -> Activations | None:
    """The requested sites from their exact entry, else from a superset entry (key -> its sites); None if neither.

    Every key shares the model identity, texts (and spans), position, dtype and truncation, and each manifest is
    checked against the request (items, sites, position, dtype, token counts), so a superset entry can only serve
    the request it was extracted for. Read without the lock: a damaged entry is skipped here and set aside by
    the extraction that follows under its lock.
    """
    lengths = tokens.lengths
    candidates = {key: sites, **supersets}
    for candidate, held in candidates.items():
        if not (root / candidate).exists():  # most are absent: skip the manifest read
            continue
        found = _open_if_sound(root / candidate, _Request(len(lengths), held, str(position), storage_name, lengths),
                               set_aside=False)
        if found is not None:
            return _only_sites(found, sites)
    return None


def _only_sites(acts: Activations, sites: tuple[str, ...]) -> Activations:
    """``acts`` restricted to ``sites`` (the same memory maps, no copy): what a request for those sites returns."""
    if acts.sites == sites:
        return acts
    return replace(acts, sites=sites, arrays={site: acts.arrays[site] for site in sites})


def _extract_into(
    model: ConceptModel,
    tokens: TokenizedTexts,
    batches: list[list[int]],
    key: str,
    root: Path,
    sites: tuple[str, ...],
    position: Position,
    padding_side: str,
    storage: torch.dtype,
    storage_name: str,
    progress: bool,
    staging: HostStaging | None,
) -> Activations:
    """Serve the entry if it is there and sound; otherwise compute it under the entry's lock.

    The lock covers resume, merge and publish: a second process asking for the same key waits, then finds the
    published entry (and runs no forward pass). An entry that fails its checks is set aside and recomputed.
    """
    request = _Request(len(tokens.input_ids), sites, str(position), storage_name, tokens.lengths)
    found = _open_if_sound(root / key, request, set_aside=False)
    if found is not None:
        counters.record_cache_hit()
        return found
    cache_store.ensure_writable(root)
    with cache_store.disk_full_is_a_cache_error(root), cache_store.EntryLock(cache_store.lock_path(root, key)):
        found = _open_if_sound(root / key, request, set_aside=True)  # published while we waited?
        if found is not None:
            counters.record_cache_hit()
            return found
        writer = cache_store.EntryWriter(root, key)
        done = writer.start()
        published = writer.finish_interrupted_publish()
        if published is not None:
            counters.record_cache_hit()
            return open_activations(published)

        def compute(missing: set[int], show: bool) -> None:
            _write_shards(model, tokens, batches, missing, writer, sites, position, padding_side, storage, staging,
                          show)

        done &= set(range(len(batches)))
        if done:
            log.info("resuming extraction %s: %d of %d batches already on disk", key, len(done), len(batches))
        compute(set(range(len(batches))) - done, progress)
        return _consolidate(model, tokens, batches, writer, sites, position, storage, storage_name, compute)


@dataclass(frozen=True)
class _Request:
    """What the caller asked for, to check a cached manifest against (a key collision or a foreign manifest)."""

    n_items: int
    sites: tuple[str, ...]
    position: str
    dtype: str
    lengths: Sequence[int]

    def mismatch(self, manifest: Mapping[str, Any]) -> str | None:
        asked = (self.n_items, list(self.sites), self.position, self.dtype, list(self.lengths))
        held = (manifest.get("n_items"), manifest.get("sites"), manifest.get("position"), manifest.get("dtype"),
                manifest.get("token_counts"))
        names = ("n_items", "sites", "position", "dtype", "token_counts")
        for name, want, have in zip(names, asked, held, strict=True):
            if want != have:
                return f"its manifest has {name} {str(have)[:80]}, the request {str(want)[:80]}"
        return None


def _open_if_sound(folder: Path, request: _Request, *, set_aside: bool) -> Activations | None:
    """The entry at ``folder`` if it exists and passes every check; else None (set aside if asked and damaged).

    Only a lock holder may set an entry aside, so without the lock a damaged entry is just not used.
    """
    if not folder.exists():
        return None
    try:
        manifest, arrays = cache_store.verify_entry(folder)
        problem = request.mismatch(manifest)
    except cache_store.CacheDamageError as error:
        problem = str(error)
    except FileNotFoundError:  # set aside or cleared by another process just now
        return None
    if problem is None:
        return _activations(folder, manifest, arrays)
    if set_aside:
        cache_store.set_aside(folder, problem)
    return None


def _write_shards(
    model: ConceptModel,
    tokens: TokenizedTexts,
    batches: list[list[int]],
    missing: set[int],
    writer: cache_store.EntryWriter,
    sites: tuple[str, ...],
    position: Position,
    padding_side: str,
    storage: torch.dtype,
    staging: HostStaging | None,
    progress: bool,
) -> None:
    """Run the ``missing`` batches and write each as a shard the moment it is done."""
    from tqdm.auto import tqdm

    done = set(range(len(batches))) - missing
    remaining = sum(len(batches[n]) for n in missing)
    bar = tqdm(total=remaining, disable=not progress, desc=f"extract {model.name}", unit="text", leave=False)
    try:
        for number, stored in _batches_to_extract(
            model, tokens, batches, done, sites, position, padding_side, storage, staging
        ):
            cache_store.write_shard(writer.partial, number, stored)
            del stored
            release_free_heap()  # streaming must not grow resident memory (see host_memory)
            bar.update(len(batches[number]))
    except NonFiniteActivationError:
        writer.discard()  # the model produces non-finite values: nothing here is worth resuming
        raise
    finally:
        bar.close()


def _checked_shard(
    writer: cache_store.EntryWriter,
    number: int,
    batch: Sequence[int],
    rows: int,
    d_model: int,
    sites: tuple[str, ...],
    storage: torch.dtype,
) -> dict[str, torch.Tensor] | None:
    """A shard that passes its hash and fits its batch (items, rows, width, dtype); None (and a warning) if not."""
    try:
        shard = cache_store.read_shard(writer.partial, number)
        problem = None
        if sorted(shard) != sorted([*sites, "__index__"]):
            problem = f"it holds {sorted(shard)}"
        elif shard["__index__"].tolist() != list(batch):
            problem = "it holds other items than its batch"
        else:
            wrong = [s for s in sites if tuple(shard[s].shape) != (rows, d_model) or shard[s].dtype != storage]
            if wrong:
                problem = f"site {wrong[0]} is {shard[wrong[0]].dtype} {tuple(shard[wrong[0]].shape)}"
    except cache_store.CacheDamageError as error:
        problem = str(error)
    if problem is None:
        return shard
    warnings.warn(
        f"activation cache entry {writer.key}: shard {number} is damaged ({problem}); recomputing that batch",
        cache_store.CacheWarning,
        stacklevel=4,
    )
    (writer.partial / cache_store._shard_name(number)).unlink(missing_ok=True)
    return None


def _consolidate(
    model: ConceptModel,
    tokens: TokenizedTexts,
    batches: list[list[int]],
    writer: cache_store.EntryWriter,
    sites: tuple[str, ...],
    position: Position,
    storage: torch.dtype,
    storage_name: str,
    compute: Callable[[set[int], bool], None],
) -> Activations:
    """Stream the shards into one array per site, in the caller's item order; memory stays one shard deep.

    Every shard is checked as it is read; a damaged one is recomputed (``compute``) before it is merged.
    """
    n_items = len(tokens.input_ids)
    d_model = model.d_model
    lengths = np.asarray(tokens.lengths, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]) if position.kind == "all" else None
    rows = int(offsets[-1]) if offsets is not None else n_items
    numpy_dtype = np.dtype(np.uint16) if storage == torch.bfloat16 else torch.empty((), dtype=storage).numpy().dtype
    outputs = {site: writer.open_array(site, (rows, d_model), numpy_dtype) for site in sites}
    try:
        for number, batch in enumerate(batches):
            batch_rows = len(batch) if offsets is None else int(lengths[batch].sum())
            shard = _checked_shard(writer, number, batch, batch_rows, d_model, sites, storage)
            if shard is None:
                compute({number}, False)
                shard = _checked_shard(writer, number, batch, batch_rows, d_model, sites, storage)
                if shard is None:
                    raise cache_store.CacheError(
                        f"shard {number} of {writer.partial} fails its check right after being written; "
                        "the disk or its filesystem is corrupting data"
                    )
            indices = shard.pop("__index__").tolist()
            for site, tensor in shard.items():
                values = cache_store._numpy_view(tensor)
                cursor = 0
                for index in indices:  # each item's rows are contiguous in the output
                    n = 1 if offsets is None else int(lengths[index])
                    first = index if offsets is None else int(offsets[index])
                    outputs[site].write_rows(first, values[cursor : cursor + n])
                    cursor += n
            del shard
            release_free_heap()
    finally:
        for output in outputs.values():
            output.close()
    extra_arrays = {"offsets": offsets} if offsets is not None else {}
    manifest = {
        "model": model.describe(),
        "sites": list(sites),
        "position": str(position),
        "n_items": n_items,
        "d_model": d_model,
        "dtype": storage_name,
        "token_counts": lengths.tolist(),
        "padding": padding_stats(tokens.lengths, batches),
    }
    folder = writer.publish(extra_arrays, manifest)
    return open_activations(folder)


def open_activations(folder: str | Path, *, verify: bool | None = None) -> Activations:
    """Open a finished cache entry; arrays are read-only memory maps.

    Sizes, shapes and dtypes are checked every time; the content hashes on the first open of each file in this
    process, or every time with ``verify=True`` (``verify=False`` skips them; without ``verify``,
    ``CONCEPTSPACE_CACHE_VERIFY=always|never`` changes the default). A damaged entry raises
    :class:`~conceptspace.cache.CacheDamageError` naming the file and what is wrong.
    """
    folder = Path(folder)
    if not (folder / cache_store.MANIFEST).exists():
        raise InvalidInputError(f"{folder} is not a finished activation cache entry (no manifest.json)")
    manifest, arrays = cache_store.verify_entry(folder, hashes=verify)
    if "files" not in manifest:
        warnings.warn(
            f"{folder} was written by an older conceptspace (cache format {manifest.get('format', 1)}) and has no "
            "content hashes: only its sizes and shapes were checked; extract again for a verified entry",
            cache_store.CacheWarning,
            stacklevel=2,
        )
    return _activations(folder, manifest, arrays)


def _activations(folder: Path, manifest: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Activations:
    """An :class:`Activations` over the verified arrays of one entry."""
    sites = tuple(manifest["sites"])
    return Activations(
        sites=sites,
        position=manifest["position"],
        n_items=int(manifest["n_items"]),
        d_model=int(manifest["d_model"]),
        model=manifest["model"],
        arrays={site: arrays[site] for site in sites},
        offsets=arrays.get("offsets"),
        folder=folder,
        storage_dtype=manifest["dtype"],
        token_counts=np.asarray(manifest["token_counts"]),
    )

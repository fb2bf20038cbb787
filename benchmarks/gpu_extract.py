"""Every token of every layer to host memory on a CUDA GPU: conceptspace's staged path vs the usual ways.

    python benchmarks/gpu_extract.py [--layers 32] [--batch 32] [--seq 512] [--repeats 5]

Workload (fixed, seeded): an 8B-size Llama architecture (hidden 4096, 32 layers, GQA 32/8, MLP 14336, vocab
128256) with random weights in bf16, one batch of 32 x 512 random token ids. Each variant runs 2 warm-ups and
``--repeats`` timed runs (CUDA-synchronised wall clock); medians and min-max are reported with the ratio to a
plain backbone forward on the same batch. Variants:

(a) plain backbone forward (no unembedding), nothing saved
(b) Hugging Face ``output_hidden_states=True``, then ``.cpu()`` of every layer
(c) nnsight, the usual pattern: save every layer's output in the trace, ``.cpu()`` afterwards
(d) conceptspace ``trace_batch`` without staging (``.cpu()`` inside the trace)
(e) conceptspace ``trace_batch`` with host staging: pinned buffers, side-stream copies (the default on CUDA)
(f) conceptspace, last token of every layer (a slice: should cost nothing)

Correctness: (e) must equal (b) bit for bit on every layer that Hugging Face returns un-normed, and (d)
everywhere. A second check runs ``extract`` end to end on a tiny float32 model on the GPU and on the CPU.
Prints a Markdown section for BENCHMARKS.md and writes JSON to $OUT (or benchmarks/results/).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from conceptspace.activations._extract import BatchInputs, extract, trace_batch  # noqa: E402
from conceptspace.activations._positions import Position  # noqa: E402
from conceptspace.activations._staging import HostStaging  # noqa: E402
from conceptspace.models import ConceptModel, ModelIdentity, load_model  # noqa: E402
from conceptspace.models._nnsight import import_nnsight  # noqa: E402
from tests.tiny_models import make_tiny_model, make_tokenizer  # noqa: E402


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    for _ in range(2):
        fn()
    sync()
    out = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - start)
    return out


def nnsight_naive(traced, layers, batch: BatchInputs) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    nnsight = import_nnsight()
    with torch.inference_mode():
        with traced.trace(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids
        ) as tracer:
            saved = nnsight.save([layer.output for layer in layers])
            tracer.stop()
    return [h.cpu() for h in saved]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=4096, help="smaller only for a CPU smoke run")
    parser.add_argument(
        "--smoke-cpu", action="store_true", help="run the script's code on the CPU (no timings worth reading)"
    )
    args = parser.parse_args()
    if not args.smoke_cpu:
        assert torch.cuda.is_available(), "this benchmark needs a CUDA GPU"
    from transformers import AutoModelForCausalLM, LlamaConfig

    device = torch.device("cpu" if args.smoke_cpu else "cuda")
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=args.hidden,
        intermediate_size=args.hidden * 7 // 2,
        num_hidden_layers=args.layers,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256 if not args.smoke_cpu else 1000,
        max_position_embeddings=8192,
        tie_word_embeddings=False,
    )
    start = time.perf_counter()
    with device:
        hf = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).eval()
    build_s = time.perf_counter() - start
    tokenizer = make_tokenizer(Path(tempfile.mkdtemp()))
    model = ConceptModel(
        hf_model=hf,
        tokenizer=tokenizer,
        is_causal=True,
        identity=ModelIdentity("random-llama-8b", "benchmark", None, None, "bfloat16"),
    )
    sites = [f"layer.{i}" for i in range(args.layers)]
    ids = torch.randint(0, config.vocab_size, (args.batch, args.seq), generator=torch.Generator().manual_seed(0))
    batch = BatchInputs(
        input_ids=ids.to(device),
        attention_mask=torch.ones_like(ids).to(device),
        position_ids=torch.arange(args.seq).expand(args.batch, -1).contiguous().to(device),
        starts=torch.zeros(args.batch, dtype=torch.long, device=device),
        lengths=torch.full((args.batch,), args.seq, dtype=torch.long, device=device),
        span_first=None,
        span_stop=None,
    )
    staging = HostStaging(device)
    layers = [model.envoy(s) for s in sites]

    def plain() -> None:
        with torch.inference_mode():
            hf.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids)

    def hf_hidden() -> list[torch.Tensor]:
        with torch.inference_mode():
            out = hf.model(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                position_ids=batch.position_ids,
                output_hidden_states=True,
            )
        return [h.cpu() for h in out.hidden_states[1:]]

    variants: dict[str, Callable[[], object]] = {
        "(a) plain backbone forward, nothing saved": plain,
        "(b) HF output_hidden_states, then .cpu() of every layer": hf_hidden,
        "(c) nnsight: save every layer, .cpu() afterwards": lambda: nnsight_naive(model.traced(), layers, batch),
        "(d) conceptspace trace_batch, no staging": lambda: trace_batch(model, batch, sites, Position("all")),
        "(e) conceptspace trace_batch, pinned buffers + side stream": lambda: trace_batch(
            model, batch, sites, Position("all"), staging
        ),
        "(f) conceptspace, last token of every layer": lambda: trace_batch(model, batch, sites, Position("last")),
    }
    timings = {name: timed(fn, args.repeats) for name, fn in variants.items()}

    # correctness: identical numbers
    reference = hf_hidden()
    unstaged = trace_batch(model, batch, sites, Position("all"))
    staged = trace_batch(model, batch, sites, Position("all"), staging)
    equal_hf = all(torch.equal(staged[s], reference[i]) for i, s in enumerate(sites[:-1]))  # last HF entry is normed
    equal_unstaged = all(torch.equal(staged[s], unstaged[s]) for s in sites)

    # end to end on a tiny float32 model: GPU extraction (staging on by default) vs CPU
    tiny_dir = make_tiny_model(Path(tempfile.mkdtemp()) / "llama", "llama")
    texts = ["The capital of France is Paris.", "Dogs bark.", "A queen and a king walked into the castle."]
    with tempfile.TemporaryDirectory() as cache:
        gpu = extract(load_model(str(tiny_dir), device=device), texts, position="all", cache_dir=cache, progress=False)
        cpu = extract(load_model(str(tiny_dir)), texts, position="all", cache=False, progress=False)
        tiny_error = max(
            float((torch.from_numpy(gpu[s].copy()) - torch.from_numpy(cpu[s])).abs().max()) for s in cpu.sites
        )

    base = statistics.median(timings["(a) plain backbone forward, nothing saved"])
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "CPU smoke run"
    saved_gb = args.layers * args.batch * args.seq * args.hidden * 2 / 1e9
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "device": name,
        "torch": torch.__version__,
        "command": "python benchmarks/gpu_extract.py " + " ".join(sys.argv[1:]),
        "model_build_s": build_s,
        "saved_gb_per_batch": saved_gb,
        "pinned_bytes": staging.bytes_allocated,
        "timings_s": timings,
        "ratios_vs_plain": {k: statistics.median(v) / base for k, v in timings.items()},
        "staged_equals_hf_bitwise": equal_hf,
        "staged_equals_unstaged_bitwise": equal_unstaged,
        "tiny_model_gpu_vs_cpu_max_abs_error": tiny_error,
    }
    out_dir = Path(os.environ.get("OUT") or ROOT / "benchmarks" / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "gpu_extract.json").write_text(json.dumps(results, indent=2))
    print(f"### GPU extraction (benchmarks/gpu_extract.py), {results['date']}\n")
    print(f"Device: {name}; torch {torch.__version__}. Command: `{results['command']}`.")
    print(
        f"Workload: random 8B-size Llama ({args.layers} layers) in bf16, {args.batch} x {args.seq} tokens; "
        f"every token of every layer is {saved_gb:.1f} GB per batch. 2 warm-ups, {args.repeats} timed runs.\n"
    )
    print("| variant | median s | min-max s | vs (a) |")
    print("|---|---|---|---|")
    for key, values in timings.items():
        median = statistics.median(values)
        print(f"| {key} | {median:.3f} | {min(values):.3f}-{max(values):.3f} | {median / base:.2f}x |")
    print(
        f"\nStaged values equal Hugging Face's bit for bit: {equal_hf}; equal the unstaged path: {equal_unstaged}. "
        f"Tiny float32 model, GPU vs CPU extraction, max abs error: {tiny_error:.2e}."
    )


if __name__ == "__main__":
    main()

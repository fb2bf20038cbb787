"""TransformerLens ``run_with_cache`` on the same batches, run in TransformerLens's own virtual environment.

    /path/to/tl-venv/bin/python benchmarks/peer_transformer_lens.py MODEL_FOLDER BATCHES_JSON REPEATS

Called by benchmarks/extract.py (``--tl-python``), which writes the batches (token ids, lengths) and the
dequantized SmolLM2 folder it loads. TransformerLens 4's ``TransformerBridge`` boots the Hugging Face model from
that local folder offline. In the same process it times a plain backbone forward on the same batches, so the
ratio it reports does not depend on the other process. Prints one JSON object.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import torch


def main() -> None:
    folder, batches_path, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    bridge = TransformerBridge.boot_transformers(folder, hf_model=hf, tokenizer=tokenizer, device="cpu")
    batches = [
        (torch.tensor(b["input_ids"]), torch.tensor(b["attention_mask"]), torch.tensor(b["lengths"]))
        for b in json.loads(open(batches_path).read())
    ]
    n_layers = hf.config.num_hidden_layers
    names = [f"blocks.{i}.hook_out" for i in range(n_layers)]

    def backbone() -> None:
        with torch.inference_mode():
            for ids, mask, _ in batches:
                hf.model(input_ids=ids, attention_mask=mask)

    def run_with_cache() -> None:
        kept = []
        with torch.inference_mode():
            for ids, mask, lengths in batches:
                _, cache = bridge.run_with_cache(ids, attention_mask=mask, names_filter=lambda n: n in names)
                rows = torch.arange(ids.shape[0])
                kept.append(torch.stack([cache[n][rows, lengths - 1] for n in names]))

    def timed(fn) -> list[float]:  # type: ignore[no-untyped-def]
        fn()
        out = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
        return out

    from importlib.metadata import version

    base = timed(backbone)
    tl = timed(run_with_cache)
    print(
        json.dumps(
            {
                "transformer_lens": version("transformer-lens"),
                "backbone_s": base,
                "run_with_cache_s": tl,
                "ratio_run_with_cache_over_backbone": statistics.median(tl) / statistics.median(base),
            }
        )
    )


if __name__ == "__main__":
    main()

"""What else could make a ViT-B/16 forward faster on a CPU, and what each costs in score drift.

The CPU target of issue 5 (deepwatch >= 3x `transformers.pipeline`) cannot be met by batching or
decoding: on a CPU the forward is the whole cost and deepwatch already runs at the bare-forward
ceiling (bench/detect.py). This script times the bare forward of one model, side by side in one
run, on pre-made tensors, in the forms one could serve it in:

  fp32          the model as loaded (what `pipeline` runs)
  bf16          bf16 weights and inputs (deepwatch's `dtype: bfloat16`)
  bf16_compile  the same through `torch.compile` (TorchInductor C++ code; compile time reported)
  int8_dynamic  `torch.ao.quantization.quantize_dynamic` on the Linear layers (fbgemm, int8 VNNI)

and reports each as `ratio_vs_fp32` plus the largest change of P(fake) against fp32 over the
batch (`max_prob_diff`). The model is a ViT-B/16 from `ViTConfig()` whose classifier head is
scaled so its probabilities spread over (0, 1) like a trained detector's; weights are random,
so the drift figures are indicative only (a real checkpoint must be re-calibrated in the form it
is served in: `deepwatch detectors eval` on the served model).

    .venv/bin/python bench/forward_variants.py [--quick] [--batch 16] [--repeat 3]
"""
from __future__ import annotations

import argparse
import time
import warnings

from _common import emit, environment


def _time(forward, x, repeat: int) -> float:
    """Best images/s over `repeat` calls after one warm-up call."""
    import torch

    with torch.inference_mode():
        forward(x)
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            forward(x)
            best = min(best, time.perf_counter() - start)
    return x.shape[0] / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 4-layer ViT-B, batch 8")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (needs a C++ compiler)")
    args = parser.parse_args()
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(num_labels=2, num_hidden_layers=4 if args.quick else 12)
    batch = 8 if args.quick else args.batch
    model = ViTForImageClassification(config).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(20.0)  # spread the random model's P(fake) over (0, 1)
    x = torch.randn(batch, 3, config.image_size, config.image_size)

    def probs(logits):
        return torch.softmax(logits.float(), dim=-1)[:, 1]

    with torch.inference_mode():
        reference = probs(model(pixel_values=x).logits)
    arms = {"fp32": (lambda t: model(pixel_values=t).logits, x)}
    bf16 = ViTForImageClassification(config).eval()
    bf16.load_state_dict(model.state_dict())
    bf16 = bf16.to(torch.bfloat16)
    xb = x.to(torch.bfloat16)
    arms["bf16"] = (lambda t: bf16(pixel_values=t).logits, xb)
    result: dict = {"bench": "forward_variants", "quick": args.quick, "model": f"ViT-B/16, {config.num_hidden_layers} layers",
                    "batch": batch, "threads": torch.get_num_threads(), "environment": environment()}
    if not args.no_compile:
        start = time.perf_counter()
        compiled = torch.compile(bf16)
        with torch.inference_mode():
            compiled(pixel_values=xb)
        result["compile_s"] = round(time.perf_counter() - start, 1)
        arms["bf16_compile"] = (lambda t: compiled(pixel_values=t).logits, xb)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's notice that quantize_dynamic moves to torchao
        int8 = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    arms["int8_dynamic"] = (lambda t: int8(pixel_values=t).logits, x)

    rates, drift = {}, {}
    for name, (forward, inputs) in arms.items():
        rates[name] = _time(forward, inputs, args.repeat)
        with torch.inference_mode():
            drift[name] = float((probs(forward(inputs)) - reference).abs().max())
    result["images_per_s"] = {k: round(v, 2) for k, v in rates.items()}
    result["max_prob_diff"] = {k: round(v, 4) for k, v in drift.items()}
    result["ratio_vs_fp32"] = {k: round(v / rates["fp32"], 2) for k, v in rates.items()}
    emit(result)


if __name__ == "__main__":
    main()

"""Trainable and total parameters of a full-size LAAC variant, built on the meta device (no memory, no weights).

    python benchmarks/param_count.py                # Submission 4: CED-Base + Q-Former + Llama 2-7B
    python benchmarks/param_count.py --text bart    # Submission 3: CED-Base + BART-Base
    python benchmarks/param_count.py --audio dasheng-0.6B
"""

import argparse

import torch

from laac.configuration_laac import LaacConfig
from laac.training.lora import apply_lora, count_trainable_parameters
from laac.modeling_laac import LaacForConditionalGeneration

ORIGINAL = {"qformer": 18.9e6, "language_projection": 3.15e6, "text_lora": 4.19e6, "audio_lora": 0.29e6, "total": 26.5e6}
BART_BASE = {"model_type": "bart", "vocab_size": 50266, "d_model": 768, "encoder_layers": 6, "decoder_layers": 6,
             "encoder_attention_heads": 12, "decoder_attention_heads": 12, "encoder_ffn_dim": 3072,
             "decoder_ffn_dim": 3072}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio", default="ced-base", help="ced-tiny/mini/small/base or dasheng-base/0.6B/1.2B")
    parser.add_argument("--text", default="llama", choices=["llama", "bart"])
    args = parser.parse_args()
    model_type = "dasheng" if args.audio.startswith("dasheng") else "ced"
    config = LaacConfig(
        audio_config={"model_type": model_type, "name": args.audio},
        text_config=BART_BASE if args.text == "bart" else None,
    )
    with torch.device("meta"):
        model = LaacForConditionalGeneration(config)
    total = sum(p.numel() for p in model.parameters())
    counts = count_trainable_parameters(apply_lora(model))
    print(f"variant: {args.audio} + {args.text}; all parameters {total / 1e6:,.2f}M")
    print(f"{'part':<22}{'LAAC':>14}{'original code':>16}")
    for part, value in counts.items():
        reference = f"{ORIGINAL[part] / 1e6:.2f}M" if args.text == "llama" and args.audio == "ced-base" and part in ORIGINAL else "-"
        print(f"{part:<22}{value:>14,}{reference:>16}")


if __name__ == "__main__":
    main()

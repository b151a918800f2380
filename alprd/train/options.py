"""The command line of `alprd train-ocr`: every option, with its default."""

from __future__ import annotations

import argparse
from pathlib import Path

from alprd.engines.platenet import CHANNELS, HIDDEN

DEFAULT_MIX = "real=0.5,rendered=0.15,synth=0.35"


def _channels(text: str) -> tuple[int, int, int, int]:
    try:
        c1, c2, c3, c4 = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--channels {text!r}: four positive integers, e.g. 32,64,96,160"
        ) from None
    if min(c1, c2, c3, c4) < 1:
        raise argparse.ArgumentTypeError(f"--channels {text!r}: widths must be >= 1")
    return c1, c2, c3, c4


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="alprd train-ocr",
        description="Train the plate recogniser; write <out>/<name>.onnx, <name>-dict.txt, "
        "MODEL_CARD.md and metrics.json.",
    )
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        help="folder with labels.csv (file,plate,kind) and images",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("models/trained"),
        help="output folder (default models/trained)",
    )
    p.add_argument(
        "--name", default="ocr-alprd-plate", help="model file stem (default ocr-alprd-plate)"
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu; AMP on cuda)")
    p.add_argument("--steps", type=int, default=6000, help="optimiser steps (default 6000)")
    p.add_argument("--batch", type=int, default=256, help="batch size (default 256)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default 2e-3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's)")
    p.add_argument("--mix", default=DEFAULT_MIX, help=f"source weights (default {DEFAULT_MIX})")
    p.add_argument(
        "--synth-reuse",
        type=int,
        default=4,
        help="times each generated plate is reused, augmented anew (default 4)",
    )
    p.add_argument(
        "--mild",
        type=float,
        default=0.3,
        help="share of samples only lightly augmented (default 0.3)",
    )
    p.add_argument(
        "--curriculum",
        type=float,
        default=0.15,
        help="share of the steps over which the mix moves from lightly augmented renders "
        "to --mix (default 0.15)",
    )
    p.add_argument(
        "--wrong-view", type=float, default=0.08,
        help="share of samples shown in the wrong view (a one-line plate unfolded, a "
        "two-line plate as one line) with the wrong-view class as target (default 0.08)",
    )  # fmt: skip
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="share of real plate texts held out (default 0.2)",
    )
    p.add_argument(
        "--val-every", type=int, default=500, help="validate every N steps (default 500)"
    )
    p.add_argument(
        "--log-every",
        type=int,
        default=100,
        help="print a progress line every N steps (default 100)",
    )
    p.add_argument(
        "--height", type=int, default=32, help="input height, multiple of 16 (default 32)"
    )
    p.add_argument(
        "--width",
        type=int,
        default=128,
        help="input width, multiple of 4 (default 128; T = width/4)",
    )
    p.add_argument(
        "--channels", type=_channels, default=CHANNELS, metavar="C1,C2,C3,C4",
        help="convolution widths of the four stages (default "
        f"{','.join(map(str, CHANNELS))})",
    )  # fmt: skip
    p.add_argument(
        "--hidden", type=int, default=HIDDEN,
        help=f"width of the convolutions along the plate (default {HIDDEN})",
    )  # fmt: skip
    p.add_argument(
        "--two-line-aspect",
        type=float,
        default=1.3,
        help="models.ocr.two_line_aspect to train with (default 1.3)",
    )
    p.add_argument("--limit", type=int, help="at most N crops per list (smoke runs)")
    p.add_argument(
        "--max-minutes", type=float, default=0,
        help="stop after this many minutes of training, the whole state saved to "
        "<out>/<name>.state.pt (default 0: no limit)",
    )  # fmt: skip
    p.add_argument(
        "--resume", type=Path, metavar="STATE",
        help="go on from a run stopped by --max-minutes (same options)",
    )  # fmt: skip
    p.add_argument(
        "--init", type=Path, metavar="CHECKPOINT",
        help="start from trained weights: a <name>.pt checkpoint or a recogniser ONNX "
        "this command exported, e.g. models/trained/ocr-alprd-plate.onnx (fine-tuning)",
    )  # fmt: skip
    p.add_argument(
        "--ema", type=float, default=0.999,
        help="decay of the moving average of the weights that is validated and kept "
        "(default 0.999, warmed up: at most (1+n)/(10+n) after n steps; 0: the weights "
        "as trained)",
    )  # fmt: skip
    p.add_argument("--no-amp", action="store_true", help="fp32 on cuda")
    p.add_argument(
        "--export-only", type=Path, metavar="CHECKPOINT", help="export a saved .pt and exit"
    )
    return p

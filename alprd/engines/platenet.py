"""The plate recogniser: a small convolutional CTC recogniser (conv blocks collapsing
the height, then 1-D convolutions along the width for context; no recurrence, so
it trains fast, exports to plain ONNX and runs well on every backend).

Input N x 3 x H x W (BGR scaled to [-1, 1], as `alprd.pipeline.ocr.crop` makes it),
H a multiple of 16, W a multiple of 4. Output N x W/4 x (1 + len(charset) + 1):
class 0 is the CTC blank, 1..len(charset) the charset (the dictionary file's lines,
in order), the last one the space class of the recogniser contract, which alprd's
recogniser emits for a crop in the wrong view (a one-line plate unfolded, a two-line
plate as one line: `alprd.pipeline.ocr.wrong_view`).
`Exported` adds the softmax, so the ONNX has the same contract as PP-OCRv5's.
"""

from __future__ import annotations

import torch
from torch import nn

from alprd.plates import CHARSET

#: The default widths (`alprd train-ocr --channels/--hidden`).
CHANNELS = (32, 64, 96, 160)
HIDDEN = 192


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]


class PlateNet(nn.Module):
    def __init__(
        self,
        height: int = 32,
        width: int = 128,
        charset: str = CHARSET,
        channels: tuple[int, int, int, int] = CHANNELS,
        hidden: int = HIDDEN,
    ) -> None:
        super().__init__()
        if height % 16 or width % 4:
            raise ValueError(f"input {height}x{width}: height must be a multiple of 16, width of 4")
        self.height, self.width, self.charset = height, width, charset
        c1, c2, c3, c4 = channels
        self.features = nn.Sequential(
            *_block(3, c1),
            nn.MaxPool2d(2, 2),  # H/2, W/2
            *_block(c1, c2),
            nn.MaxPool2d(2, 2),  # H/4, W/4
            *_block(c2, c3),
            *_block(c3, c3),
            nn.MaxPool2d((2, 1), (2, 1)),  # H/8
            *_block(c3, c4),
            *_block(c4, c4),
            nn.MaxPool2d((2, 1), (2, 1)),  # H/16
            nn.Conv2d(c4, c4, (height // 16, 1), bias=False),  # height -> 1
            nn.BatchNorm2d(c4),
            nn.ReLU(True),
        )
        self.context = nn.Sequential(  # along the width: 3 x kernel 3 (7 steps, 28 px)
            nn.Conv1d(c4, hidden, 3, padding=1, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(True),
            nn.Conv1d(hidden, hidden, 3, padding=1, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(True),
            nn.Conv1d(hidden, hidden, 3, padding=1, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(True),
        )
        self.head = nn.Conv1d(hidden, len(charset) + 2, 1)

    @property
    def steps(self) -> int:
        return self.width // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N x 3 x H x W -> N x T x classes (logits)."""
        # each crop normalised to zero mean and unit spread: dark infrared crops and
        # bright renders look alike to the first layer
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = ((x - mean) ** 2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
        x = (x - mean) / (std + 0.05)
        f = self.features(x).squeeze(2)  # N x C x T
        out: torch.Tensor = self.head(self.context(f)).permute(0, 2, 1)  # N x T x classes
        return out


class Exported(nn.Module):
    """The served graph: probabilities, not logits."""

    def __init__(self, net: PlateNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=-1)


def encode(text: str, charset: str = CHARSET) -> list[int]:
    """Plate text -> class indices (1-based; characters outside the charset dropped);
    a space is the last class (a crop shown in the wrong view: see
    `alprd.pipeline.ocr.wrong_view`)."""
    index = {c: i + 1 for i, c in enumerate(charset)} | {" ": len(charset) + 1}
    return [index[c] for c in text if c in index]


def greedy(logits: torch.Tensor, charset: str = CHARSET) -> list[str]:
    """Best-path CTC decoding of N x T x classes scores (logits or probabilities)."""
    out = []
    for seq in logits.argmax(-1).tolist():
        chars, prev = [], 0
        for k in seq:
            if k != prev and 0 < k <= len(charset):
                chars.append(charset[k - 1])
            prev = k
        out.append("".join(chars))
    return out

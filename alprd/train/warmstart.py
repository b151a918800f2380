"""Where training starts from (`alprd train-ocr --init`): a checkpoint, or a
recogniser ONNX that `alprd train-ocr` exported, at the same or wider channels."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from alprd.engines.platenet import PlateNet


def init_from(path: Path, net: PlateNet) -> None:
    """Start `net` from trained weights: a checkpoint (`<name>.pt`) or a recogniser
    ONNX that `alprd train-ocr` exported (the shipped model: its batch norms are
    folded into the convolutions, so each norm starts as the identity with the
    folded bias). Every layer but the height-collapsing one is independent of the
    input width, so a model may go on at another width; and at wider channels
    (`--channels`, `--hidden`): each trained weight fills the leading slice of the
    wider one and a new channel's outgoing weights start at zero, so the wider
    network computes what the trained one did until training uses the new channels."""
    if path.suffix.lower() != ".onnx":
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=False)["model"])
        return
    from alprd.engines import lift

    fused, _ = lift.platenet_from_onnx(path)
    sources = [m for m in fused.modules() if isinstance(m, nn.Conv1d | nn.Conv2d)]
    layers = [m for seq in (net.features, net.context) for m in seq] + [net.head]
    convs = [(i, m) for i, m in enumerate(layers) if isinstance(m, nn.Conv1d | nn.Conv2d)]
    if len(convs) != len(sources):
        raise SystemExit(f"error: {path}: {len(sources)} convolutions, this network has "
                         f"{len(convs)}")  # fmt: skip
    with torch.no_grad():
        for (i, conv), src in zip(convs, sources, strict=True):
            _fill(conv.weight, src.weight, path)
            if conv.bias is not None:
                _fill(conv.bias, src.bias, path)
                continue
            norm = layers[i + 1]  # the batch norm folded into src: identity + its bias
            norm.weight.fill_(1.0)
            norm.bias.zero_()
            _fill(norm.bias, src.bias, path)
            norm.running_mean.zero_()
            norm.running_var.fill_(1.0 - norm.eps)


def _fill(dst: torch.Tensor, src: torch.Tensor, path: Path) -> None:
    """`src` into the leading slice of `dst` (as wide or wider in every dimension but
    a convolution's kernel); a convolution's extra inputs (dimension 1) are zeroed,
    its extra outputs keep their fresh initialisation."""
    fits = dst.dim() == src.dim() and all(
        d >= s and (k < 2 or d == s)
        for k, (d, s) in enumerate(zip(dst.shape, src.shape, strict=True))
    )
    if not fits:
        raise SystemExit(f"error: {path}: a weight of {tuple(src.shape)} where {tuple(dst.shape)} "
                         "fits (fewer channels, or another height?)")  # fmt: skip
    if dst.dim() > 1:
        dst[:, src.shape[1] :].zero_()
    dst[tuple(slice(0, n) for n in src.shape)].copy_(src)

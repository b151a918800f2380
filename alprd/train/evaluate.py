"""The recogniser measured as alprd serves it: exact plates per data set and
region on the validation split, and the score a run keeps its best step by."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from alprd.engines.platenet import greedy
from alprd.pipeline.ocr import either_view
from alprd.train import data, labels


def validation_inputs(
    items: Sequence[data.Item], spec: data.CropSpec
) -> dict[str, dict[str, np.ndarray]]:
    """Two views of each validation crop: ``tight`` (the crop as labelled) and
    ``detector`` (a box 1.4x the plate's height and 1.1x its width, centred, about
    what the plate detector gives); each prepared both ways (``one``: as one line,
    ``two``: unfolded) with ``first``, whether serving would read it unfolded first
    (its aspect below ``two_line_aspect``)."""
    out: dict[str, dict[str, list[Any]]] = {}
    for item in items:
        h, w = item.image.shape[:2]
        for view, (image, box) in (
            ("tight", (item.image, (0.0, 0.0, float(w), float(h)))),
            ("detector", data.detector_view(item.image)),
        ):
            parts = out.setdefault(view, {"one": [], "two": [], "first": []})
            parts["one"].append(spec.view(False)(image, box))
            parts["two"].append(spec.view(True)(image, box))
            bw, bh = box[2] - box[0], box[3] - box[1]
            parts["first"].append(bw < spec.two_line_aspect * bh)
    return {view: {k: np.stack(v) for k, v in parts.items()} for view, parts in out.items()}


@torch.no_grad()
def probabilities(
    net: nn.Module, x: np.ndarray, device: torch.device, batch: int = 256
) -> np.ndarray:
    """The recogniser's softmax output (N x T x classes) on inputs `x`."""
    net.eval()
    out = [
        torch.softmax(net(torch.from_numpy(x[i : i + batch]).to(device)).float(), -1).cpu().numpy()
        for i in range(0, len(x), batch)
    ]
    return np.concatenate(out) if out else np.zeros((0, 1, 1), np.float32)


def read_as_served(net: nn.Module, view: dict[str, np.ndarray], device: torch.device) -> list[str]:
    """What serving reads (`alprd.pipeline.recognizer`): each crop in the view its
    aspect suggests, and the other way when the recogniser says it is the wrong one."""
    one, two = probabilities(net, view["one"], device), probabilities(net, view["two"], device)
    first = view["first"].astype(bool)[:, None, None]
    chosen, _ = either_view(np.where(first, two, one), np.where(first, one, two))
    return greedy(torch.from_numpy(chosen))


def region_exact(per_kind: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Exact rates per region (`labels.region_of` each kind) from per-kind counts."""
    out: dict[str, list[int]] = {}
    for kind, m in per_kind.items():
        c = out.setdefault(labels.region_of(kind), [0, 0])
        c[0] += m["ok"]
        c[1] += m["n"]
    return {r: {"exact": ok / max(1, n), "n": n} for r, (ok, n) in sorted(out.items())}


def evaluate(
    net: nn.Module,
    items: Sequence[data.Item],
    views: dict[str, dict[str, np.ndarray]],
    device: torch.device,
) -> dict[str, Any]:
    """Exact-read rates per view, per region and per kind, and the character
    confusions."""
    result: dict[str, Any] = {}
    for view, x in views.items():
        got = read_as_served(net, x, device)
        per_kind: dict[str, dict[str, Any]] = {}
        confusions: dict[str, int] = {}
        for item, text in zip(items, got, strict=True):
            ok = per_kind.setdefault(item.kind, {"ok": 0, "n": 0})
            ok["ok"] += text == item.text
            ok["n"] += 1
            if text != item.text and len(text) == len(item.text):
                for a, b in zip(item.text, text, strict=True):
                    if a != b:
                        key = f"{a}->{b}"
                        confusions[key] = confusions.get(key, 0) + 1
        total = sum(v["ok"] for v in per_kind.values()), sum(v["n"] for v in per_kind.values())
        result[view] = {
            "exact": total[0] / max(1, total[1]),
            "n": total[1],
            "per_region": region_exact(per_kind),
            "per_kind": {
                k: {"exact": v["ok"] / v["n"], "n": v["n"], "ok": v["ok"]}
                for k, v in sorted(per_kind.items())
            },
            "confusions": dict(sorted(confusions.items(), key=lambda kv: -kv[1])[:10]),
        }
    return result


def selection_score(metrics: dict[str, Any]) -> float:
    """What picks the kept checkpoint: the mean over views and regions of the exact
    rates (each region counts alike, however many crops it has)."""
    rates = [float(m["exact"]) for v in metrics.values() for m in v["per_region"].values()]
    return sum(rates) / max(1, len(rates))

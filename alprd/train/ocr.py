"""`alprd train-ocr` (or ``python -m alprd.train.ocr``): train the plate recogniser,
export it to ONNX, write its dictionary, model card and metrics.

Needs numpy, OpenCV and torch; ``onnx`` for the export (torch's exporter imports
it; without it the checkpoint is kept and ``--export-only`` exports it later) and
``onnxruntime`` to check the export and measure its latency (optional).
Reproducible: the seed fixes the weights, the data order and every augmentation
(per DataLoader worker); the split is a hash of the plate text.

    python -m alprd.train.ocr --data $ALPRD_TEST_DATA/ocr-train --out models/trained \\
        --device cuda --workers 15 --steps 6000 --batch 256
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader, IterableDataset

from alprd.engines.platenet import CHANNELS, HIDDEN, PlateNet, encode
from alprd.plates import CHARSET
from alprd.train import data
from alprd.train.evaluate import evaluate, selection_score, validation_inputs
from alprd.train.export import export, model_card, versions
from alprd.train.options import parser
from alprd.train.warmstart import init_from

# --------------------------------------------------------------------------- data


class Stream(IterableDataset[tuple[np.ndarray, str, str]]):
    """Endless training samples; each DataLoader worker draws its own seeded stream
    (and its own share of generated plates)."""

    def __init__(
        self,
        recipe: data.Recipe,
        weights: dict[str, float],
        spec: data.CropSpec,
        seed: int,
        synth_reuse: int,
        mild: float,
        curriculum: float,
        wrong_view: float = 0.0,
    ) -> None:
        self.recipe, self.weights, self.spec = recipe, weights, spec
        self.seed, self.synth_reuse, self.mild = seed, synth_reuse, mild
        self.curriculum, self.wrong_view = curriculum, wrong_view
        #: training progress in [0, 1], shared with the worker processes
        self.progress = multiprocessing.Value("d", 0.0, lock=False)

    def __iter__(self) -> Iterator[tuple[np.ndarray, str, str]]:
        info = torch.utils.data.get_worker_info()
        wid, n = (info.id, info.num_workers) if info is not None else (0, 1)
        cv2.setNumThreads(1)
        generator = data.synth_generator(self.seed) if self.weights.get("synth", 0) > 0 else None
        mixer = data.Mixer(
            self.recipe.train,
            self.recipe.rendered,
            self.weights,
            self.spec,
            self.seed * 1000 + wid,
            generator=generator,
            synth_offset=wid,
            synth_stride=n,
            synth_reuse=self.synth_reuse,
            mild=self.mild,
            progress=lambda: float(self.progress.value),
            curriculum=self.curriculum,
            wrong_view=self.wrong_view,
        )
        while True:
            yield mixer()


def collate(
    batch: Sequence[tuple[np.ndarray, str, str]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    x = torch.from_numpy(np.stack([b[0] for b in batch]))
    labels = [encode(b[1]) for b in batch]
    targets = torch.tensor([c for lab in labels for c in lab], dtype=torch.long)
    lengths = torch.tensor([len(lab) for lab in labels], dtype=torch.long)
    return x, targets, lengths, [b[2] for b in batch]


def parse_mix(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in filter(None, text.split(",")):
        name, _, value = part.partition("=")
        if name not in data.SOURCES:
            raise argparse.ArgumentTypeError(
                f"--mix: unknown source {name!r}; one of {data.SOURCES}"
            )
        out[name] = float(value)
        if out[name] < 0:
            raise argparse.ArgumentTypeError("--mix: weights must be >= 0")
    return out


# --------------------------------------------------------------------------- training


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def train(args: argparse.Namespace) -> dict[str, Any]:
    seed_everything(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    spec = data.CropSpec(args.height, args.width, args.two_line_aspect)
    weights = parse_mix(args.mix)
    recipe = data.load(args.data, args.val_fraction, limit=args.limit)
    synth_available = data.synth_generator(args.seed) is not None
    if weights.get("synth", 0) > 0 and not synth_available:
        print("note: alprd.train.synth is not installed; training without generated plates")
        weights["synth"] = 0.0
    counts = recipe.counts()
    print(f"data {args.data}: {counts}, mix {weights}", flush=True)
    if not recipe.validation:
        print("note: no validation crops; the last checkpoint is kept")

    net = PlateNet(args.height, args.width, channels=args.channels, hidden=args.hidden).to(device)
    params = sum(p.numel() for p in net.parameters())
    resumed = _load_state(args.resume, args) if args.resume else None
    if resumed is not None:
        net.load_state_dict(resumed["model"])
    elif args.init:
        init_from(args.init, net)
    # a resumed run draws samples it has not drawn yet (another seed per resumption)
    data_seed = args.seed if resumed is None else args.seed + 7919 * resumed["step"]
    stream = Stream(recipe, weights, spec, data_seed, args.synth_reuse, args.mild, args.curriculum,
                    args.wrong_view)  # fmt: skip
    loader = DataLoader(
        stream,
        batch_size=args.batch,
        num_workers=args.workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
        persistent_workers=args.workers > 0,
        prefetch_factor=4 if args.workers > 0 else None,
    )
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    # an exponential moving average of the weights (and batch-norm statistics) is what
    # is validated, kept and exported: steadier than the last step's weights
    ema = AveragedModel(net, multi_avg_fn=_ema(args.ema), use_buffers=True) if args.ema else None
    kept = cast(PlateNet, ema.module) if ema is not None else net
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=args.steps, pct_start=0.15
    )
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    amp = device.type == "cuda" and not args.no_amp
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    views = validation_inputs(recipe.validation, spec) if recipe.validation else {}
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint = args.out / f"{args.name}.pt"
    state_path = args.out / f"{args.name}.state.pt"
    best, best_step, history = -1.0, 0, []
    sources: dict[str, int] = {}
    started = time.monotonic()
    running: list[float] = []
    step, spent = 0, 0.0  # spent: training seconds of earlier runs of a resumed one
    if resumed is not None:
        optimizer.load_state_dict(resumed["optimizer"])
        schedule.load_state_dict(resumed["schedule"])
        scaler.load_state_dict(resumed["scaler"])
        if ema is not None:
            ema.load_state_dict(resumed["ema"])
        step, best, best_step = resumed["step"], resumed["best"], resumed["best_step"]
        history, sources, spent = resumed["history"], resumed["sources"], resumed["train_s"]
        stream.progress.value = step / args.steps
        print(f"resumed at step {step}/{args.steps} (best {best:.4f} at {best_step})", flush=True)
    deadline = started + 60 * args.max_minutes if args.max_minutes else None

    def save_state() -> None:  # everything a later run needs to go on from here
        tmp = state_path.with_suffix(".tmp")
        torch.save({
            "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
            "scaler": scaler.state_dict(), "step": step, "best": best, "best_step": best_step,
            "ema": ema.state_dict() if ema is not None else None,
            "history": history, "sources": sources,
            "train_s": spent + time.monotonic() - started, "run": _run_key(args),
        }, tmp)  # fmt: skip
        tmp.replace(state_path)

    stopped = False
    for x, targets, lengths, names in loader if step < args.steps else ():
        step += 1
        stream.progress.value = step / args.steps
        for s in names:
            sources[s] = sources.get(s, 0) + 1
        net.train()
        x = x.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            logits = net(x)
        logp = logits.float().log_softmax(-1).permute(1, 0, 2)  # T x N x C
        steps_in = torch.full((x.shape[0],), logp.shape[0], dtype=torch.long, device=device)
        loss = ctc(logp, targets.to(device), steps_in, lengths.to(device))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        scaler.step(optimizer)
        scaler.update()
        schedule.step()
        if ema is not None:
            ema.update_parameters(net)
        running.append(float(loss.detach()))
        last = step == args.steps
        if step % args.log_every == 0 or last:
            line = (
                f"step {step}/{args.steps} loss {statistics.fmean(running):.4f} "
                f"lr {schedule.get_last_lr()[0]:.2e} {time.monotonic() - started:.0f}s"
            )
            running = []
            if views and (step % args.val_every == 0 or last):
                metrics = evaluate(kept, recipe.validation, views, device)
                score = selection_score(metrics)
                line += (
                    f" val_exact tight {metrics['tight']['exact']:.4f}"
                    f" detector {metrics['detector']['exact']:.4f} per region "
                    + " ".join(f"{r} {m['exact']:.3f}/{mm['exact']:.3f}" for (r, m), mm in zip(
                        metrics["tight"]["per_region"].items(),
                        metrics["detector"]["per_region"].values(), strict=True))
                )  # fmt: skip
                history.append(
                    {
                        "step": step,
                        "loss": float(loss.detach()),
                        **{k: v["exact"] for k, v in metrics.items()},
                    }
                )
                if score > best:
                    best, best_step = score, step
                    _save(checkpoint, kept, args, step, metrics)
                    line += " (best)"
            print(line, flush=True)
        if step % args.val_every == 0 and not last:
            save_state()
        if last:
            break
        if deadline is not None and time.monotonic() > deadline:
            save_state()
            stopped = True
            print(f"stopped at step {step}/{args.steps} (--max-minutes {args.max_minutes:g}); "
                  f"go on with --resume {state_path}", flush=True)  # fmt: skip
            break
    if stopped:
        return {"net": None, "run": {"stopped_at": step, "state": str(state_path)}}
    if not views:
        _save(checkpoint, kept, args, step, {})
        best_step = step
    train_s = spent + time.monotonic() - started
    state_path.unlink(missing_ok=True)  # done: nothing to resume
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    net.load_state_dict(state["model"])
    net = net.cpu()
    final = evaluate(net, recipe.validation, views, torch.device("cpu")) if views else {}
    run = {
        "data": dataset(args.data),
        "counts": counts,
        "mix": weights,
        "samples_drawn": sources,
        "synth_module": synth_available,
        "steps": args.steps,
        "batch": args.batch,
        "lr": args.lr,
        "seed": args.seed,
        "device": str(device)
        + (f" ({torch.cuda.get_device_name(0)})" if device.type == "cuda" else ""),
        "amp": amp,
        "workers": args.workers,
        "train_s": round(train_s, 1),
        "best_step": best_step,
        "params": params,
        "input": [3, args.height, args.width],
        "channels": list(args.channels),
        "hidden": args.hidden,
        "two_line_aspect": args.two_line_aspect,
        "mild": args.mild,
        "curriculum": args.curriculum,
        "wrong_view": args.wrong_view,
        "ema": args.ema,
        "label_audit": recipe.audited,
        "init": str(args.init) if args.init else None,
        "resumed": resumed is not None,
        "validation": final,
        "history": history,
    }
    return {"net": net, "run": run}


def _ema(decay: float) -> Callable[[list[torch.Tensor], list[torch.Tensor], Any], None]:
    """The moving-average update with the usual warm-up: the decay is at most
    (1 + n) / (10 + n) after n updates, so a short run's average follows its
    weights instead of staying near the initial ones."""

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n: Any) -> None:
        d = min(decay, (1.0 + float(n)) / (10.0 + float(n)))
        with torch.no_grad():
            if averaged[0].is_floating_point():  # one dtype per call
                torch._foreach_lerp_(averaged, current, 1.0 - d)
            else:  # batch-norm step counters
                torch._foreach_copy_(averaged, current)

    return update


def dataset(folder: Path) -> str:
    """The data a model was trained on, by name (the folder's name and its label
    files), never by where it lay on the training machine."""
    labels = sorted(p.name for p in folder.glob("labels*.csv"))
    return f"{folder.name} ({', '.join(labels)})" if labels else folder.name


def _run_key(args: argparse.Namespace) -> dict[str, Any]:
    """What a resumed run must share with the run it goes on from."""
    return {k: getattr(args, k) for k in ("steps", "batch", "lr", "seed", "height", "width",
                                          "mix", "name", "ema", "channels",
                                          "hidden", "wrong_view")}  # fmt: skip


def _load_state(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    theirs, ours = state.get("run", {}), _run_key(args)
    differ = [f"--{k} {theirs.get(k)} (now {v})" for k, v in ours.items() if theirs.get(k) != v]
    if differ:
        raise SystemExit(f"error: {path} was saved by another run: {', '.join(differ)}; "
                         "resume with the same options")  # fmt: skip
    return state


def _save(
    path: Path, net: PlateNet, args: argparse.Namespace, step: int, metrics: dict[str, Any]
) -> None:
    torch.save(
        {
            "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "height": args.height,
            "width": args.width,
            "channels": list(args.channels),
            "hidden": args.hidden,
            "charset": CHARSET,
            "step": step,
            "metrics": metrics,
        },
        path,
    )


# --------------------------------------------------------------------------- export


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command = "alprd train-ocr " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.export_only:
        state = torch.load(args.export_only, map_location="cpu", weights_only=False)
        net = PlateNet(
            state["height"], state["width"], state["charset"],
            channels=tuple(state.get("channels", CHANNELS)), hidden=state.get("hidden", HIDDEN),
        )  # fmt: skip
        net.load_state_dict(state["model"])
        args.out.mkdir(parents=True, exist_ok=True)
        print(json.dumps(export(net, args.out, args.name)))
        return 0
    if args.steps < 1 or args.batch < 1:
        print("error: --steps and --batch must be >= 1", file=sys.stderr)
        return 2
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    result = train(args)
    run = result["run"]
    if result["net"] is None:  # stopped by --max-minutes: nothing to export yet
        return 0
    if importlib.util.find_spec("onnx") is None:  # torch.onnx.export needs it
        again = args.out / f"{args.name}.pt"
        print(f"note: onnx is not installed: not exported; install it, then --export-only {again}")
        exported = {}
    else:
        exported = export(result["net"], args.out, args.name)
    metrics = {**run, "export": exported, "versions": versions(), "command": command}
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    (args.out / "MODEL_CARD.md").write_text(
        model_card(args.name, run, exported, command), encoding="utf-8"
    )
    v = run["validation"]
    summary = {k: round(m["exact"], 4) for k, m in v.items()}
    print(
        f"done: {args.out / (args.name + '.onnx')} val_exact {summary} export {exported}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Cost of the native-resolution encoder against CSF-style early fusion (pretraining, item 7).

Same synthetic view batches for every encoder (optical 10+20 m, SAR 10 m, thermal 60 m):
- ``fusion``: the toolkit's encoder, one stem per stream at its native resolution;
- ``early_conv``: CSF-style, every stream upsampled to the finest (10 m) grid, stacked, one plain
  conv stem at that grid, the same transformer trunk;
- ``early_bandset``: stacked at 10 m like CSF, but through our band-set stem.
Reports MACs per sample (torch's FlopCounterMode, MACs = FLOPs / 2), parameters, and training
samples/s (forward + backward + AdamW step of encoder, projection head and NT-Xent on two views,
median step time over interleaved repeats, single process). With ``--probe-steps N`` each encoder
is also pretrained N steps and probed (logistic regression on frozen embeddings of the train
chips, scored on the 63 spatially held-out chips plus every chip of ``--extra-places`` synthetic
places no encoder saw, as in ``pretrain_quality``; the 63-chip score alone is reported too).
With ``--init-seeds N`` each encoder is also probed at random initialisation (seeds 0…N−1, no
pretraining): what the architecture gives before pretraining, to read the pretrained gap against.

    python benchmarks/pretrain_cost.py [--batch 32] [--steps 5] [--repeats 5] [--probe-steps 0]
        [--init-seeds 0] [--json out.json] [--plot out.png]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightly.loss import NTXentLoss

from benchmarks.report import atomic_write, machine, write_json
from fusion.data.collate import Batch
from fusion.data.datasets import build_datasets
from fusion.models import count_macs, projection_head
from fusion.pretrain import PretrainConfig, build_encoder, pretrain, streams_of
from fusion.views import ViewConfig, ViewMaker, collate_views

ENCODERS = ("fusion", "early_conv", "early_bandset")


def view_batches(n_batches: int, batch: int, seed: int) -> tuple[list[tuple[Batch, Batch]], Any]:
    bundle = build_datasets("synthetic", seed=seed)
    maker = ViewMaker(ViewConfig(), seed=seed)
    out = []
    for k in range(n_batches):
        idx = [(k * batch + i) % len(bundle.train) for i in range(batch)]  # type: ignore[arg-type]
        out.append(collate_views([maker(bundle.train[i]) for i in idx]))
    return out, bundle


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_times(
    cfg: PretrainConfig,
    streams: dict[str, Any],
    batches: list[tuple[Batch, Batch]],
    device: torch.device | None = None,
) -> tuple[torch.nn.Module, list[float]]:
    """Seconds per training step (forward, backward, AdamW) on ``device`` (default CPU); the
    batches are moved there before timing, and CUDA is synchronised around every step."""
    device = device or torch.device("cpu")
    torch.manual_seed(0)
    enc = build_encoder(cfg, streams).to(device)
    head = projection_head(cfg.width, 2 * cfg.width, cfg.proj_dim).to(device)
    loss_fn = NTXentLoss(temperature=cfg.temperature)
    opt = torch.optim.AdamW([*enc.parameters(), *head.parameters()], lr=cfg.lr)
    times = []
    for b1, b2 in [(b1.to(device), b2.to(device)) for b1, b2 in batches]:
        _sync(device)
        t0 = time.perf_counter()
        loss = loss_fn(head(enc(b1)), head(enc(b2)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return enc.cpu(), times


def _probe_rows(
    rows: dict[str, dict[str, Any]],
    cfgs: dict[str, PretrainConfig],
    bundle: Any,
    streams: dict[str, Any],
    args: argparse.Namespace,
) -> None:
    """Probe accuracies into ``rows``: after ``--probe-steps`` of pretraining and/or at random
    initialisation (``--init-seeds``); train chips → held-out split + unseen places."""
    from benchmarks.pretrain_quality import Samples, embed, extra_places, labels, probe

    split = [bundle.val[i] for i in range(len(bundle.val))]
    test = Samples(split + extra_places(args.extra_places, bundle.specs).items)
    ytr, yte = labels(bundle.train), labels(test)
    keep = lambda s: s  # noqa: E731

    def score(enc: torch.nn.Module) -> Any:
        clf = probe(embed(enc, bundle.train, keep), ytr)  # type: ignore[arg-type]
        return clf.predict(embed(enc, test, keep)) == yte  # type: ignore[arg-type]

    out = tempfile.mkdtemp(prefix="fusion-cost-")
    for name in ENCODERS:
        row = rows[name]
        row["probe_test_chips"] = len(yte)
        if args.init_seeds > 0:
            accs = []
            for seed in range(args.init_seeds):
                torch.manual_seed(seed)
                accs.append(float(score(build_encoder(cfgs[name], streams)).mean()))
            row["random_init_accuracy_per_seed"] = accs
            row["random_init_accuracy"] = statistics.mean(accs)
        if args.probe_steps > 0:
            cfg = dataclasses.replace(cfgs[name], out=out, name=name, max_steps=args.probe_steps)
            ckpt = torch.load(pretrain(cfg, progress=False)["checkpoint"], weights_only=False)
            enc = build_encoder(cfg, streams)
            state = {k[8:]: v for k, v in ckpt["state_dict"].items() if k.startswith("encoder.")}
            enc.load_state_dict(state)
            hits = score(enc)
            row["probe_accuracy"] = float(hits.mean())
            row["probe_accuracy_split_only"] = float(hits[: len(split)].mean())


def write_plot(path: Path, result: dict[str, Any]) -> None:
    """Bars: MMAC per sample (lower is better) and training samples/s (higher is better)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    names = list(rows)
    colours = ["tab:green" if n == "fusion" else "tab:gray" for n in names]
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.4), dpi=120)
    panels = (
        ("macs_per_sample", 1e-6, "MMAC / sample (lower is better)", "{:.1f}"),
        ("train_samples_per_s", 1.0, "training samples / s (higher is better)", "{:.0f}"),
    )
    for ax, (key, scale, label, fmt) in zip(axes, panels, strict=True):
        values = [rows[n][key] * scale for n in names]
        bars = ax.bar(names, values, color=colours)
        ax.bar_label(bars, labels=[fmt.format(v) for v in values], padding=2, fontsize=8)
        ax.set_ylabel(label, fontsize=8)
        ax.margins(y=0.15)
    fig.suptitle(
        f"{result['data']}; batch {result['batch']}, width {result['width']}, "
        f"{result['threads']} threads",
        fontsize=9,
    )
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png"), mode="wb")
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32, help="footprints per step (two views each)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per repeat")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats (median)")
    p.add_argument("--width", type=int, default=64, help="encoder width")
    p.add_argument("--probe-steps", type=int, default=0, help="pretrain + probe each encoder")
    p.add_argument(
        "--extra-places",
        type=int,
        default=10,
        help="unseen synthetic places added to the probe test",
    )
    p.add_argument(
        "--init-seeds",
        type=int,
        default=0,
        help="also probe each encoder at random initialisation with this many seeds",
    )
    p.add_argument(
        "--pixel-channels",
        type=int,
        default=0,
        help="K of our stems' native-resolution pixel stage (ours and early_bandset; 0: none)",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="device the timed steps run on (cpu, cuda); MACs and probes stay on the CPU",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the numbers here")
    p.add_argument("--plot", help="write a bar chart (PNG) here")
    args = p.parse_args(argv)

    device = torch.device(args.device)
    batches, bundle = view_batches(args.steps, args.batch, args.seed)
    streams = streams_of(bundle.specs)
    cfgs = {
        name: PretrainConfig.from_dict(
            {"encoder": name, "width": args.width, "pixel_channels": args.pixel_channels}
        )
        for name in ENCODERS
    }
    rows: dict[str, dict[str, Any]] = {name: {"step_s": []} for name in ENCODERS}
    for name, cfg in cfgs.items():  # warm-up, MACs and parameters
        enc, _ = step_times(cfg, streams, batches[:1], device)
        enc.eval()
        b1 = batches[0][0]
        rows[name]["macs_per_sample"] = count_macs(enc, b1) / len(b1)
        rows[name]["params"] = sum(q.numel() for q in enc.parameters())
    for _ in range(args.repeats):
        for name, cfg in cfgs.items():
            _, times = step_times(cfg, streams, batches, device)
            rows[name]["step_s"].append(statistics.median(times))
    for row in rows.values():
        row["median_step_s"] = statistics.median(row["step_s"])
        row["train_samples_per_s"] = args.batch / row["median_step_s"]
    if args.probe_steps > 0 or args.init_seeds > 0:
        _probe_rows(rows, cfgs, bundle, streams, args)
    ours = rows["fusion"]
    result = {
        "command": "python -m benchmarks.pretrain_cost "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "encoder": {"pixel_channels": cfgs["fusion"].pixel_channels},
        "data": bundle.description,
        "batch": args.batch,
        "width": args.width,
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "machine": machine(),
        "rows": rows,
        "macs_ratio_csf_over_ours": rows["early_conv"]["macs_per_sample"] / ours["macs_per_sample"],
        "speed_ratio_ours_over_csf": ours["train_samples_per_s"]
        / rows["early_conv"]["train_samples_per_s"],
    }
    print(f"## Encoder cost, {bundle.description}; batch {args.batch}, width {args.width}\n")
    print("| encoder | MMAC/sample | params | train samples/s | probe acc. | random-init probe |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        acc = f"{r['probe_accuracy']:.3f}" if "probe_accuracy" in r else "-"
        init = f"{r['random_init_accuracy']:.3f}" if "random_init_accuracy" in r else "-"
        print(
            f"| {name} | {r['macs_per_sample'] / 1e6:.2f} | {r['params']:,} | "
            f"{r['train_samples_per_s']:.1f} | {acc} | {init} |"
        )
    m, s = result["macs_ratio_csf_over_ours"], result["speed_ratio_ours_over_csf"]
    print(f"\n- CSF-style/ours MACs: {m:.2f}× (target ≥ 1.5×) {'PASS' if m >= 1.5 else 'MISS'}")
    print(
        f"- ours/CSF-style training samples/s: {s:.2f}× (target ≥ 1.5×) "
        f"{'PASS' if s >= 1.5 else 'MISS'}"
    )
    if "random_init_accuracy" in ours:
        a, b = ours["random_init_accuracy"], rows["early_conv"]["random_init_accuracy"]
        print(
            f"- probe accuracy at random initialisation (mean of {args.init_seeds} seeds): "
            f"ours {a:.3f}, CSF-style {b:.3f}"
        )
    if "probe_accuracy" in ours:
        a, b = ours["probe_accuracy"], rows["early_conv"]["probe_accuracy"]
        print(
            f"- probe accuracy after {args.probe_steps} steps: ours {a:.3f}, CSF-style {b:.3f} "
            f"(target: equal or better) {'PASS' if a >= b else 'MISS'}"
        )
    if args.json:
        write_json(Path(args.json), result)
    if args.plot:
        write_plot(Path(args.plot), result)
    return result


if __name__ == "__main__":
    main()

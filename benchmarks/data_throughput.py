"""Aligned multi-sensor chips per second from per-band GeoTIFF folders at mixed resolutions.

Compares, in one process and on the same chip footprints (drawn once with a fixed seed):

- ``ours``: :meth:`fusion.data.align.AlignedScene.read_chip`, a :class:`~fusion.data.sample.Sample`
  of torch tensors at each stream's native resolution (64/32/11 px for 10/20/60 m at 640 m), with
  validity masks (cloud mask applied) and physical values;
- ``naive``: per chip, every band read from an open handle and resampled onto the finest (10 m)
  grid with rasterio's ``out_shape`` + bilinear resampling, stacked into one ``(C, H, W)`` tensor
  (what CSF/torchgeo-style loaders do); no masks;
- ``torchgeo`` (when ``import torchgeo`` works): one ``RasterDataset`` subclass per resolution
  (``separate_files=True``), combined with ``&`` into an ``IntersectionDataset``, one per cell in
  the cell's own CRS (torchgeo would otherwise reproject cells of different UTM zones onto the
  first one's CRS), queried with each chip's exact footprint;
- ``raw``: the same native-resolution windows read with rasterio alone on already-open handles
  (windows precomputed), no alignment, no tensors, no masks: the I/O floor.

Each method is timed as the median of ``--repeats`` passes over ``--chips`` chips, after one
untimed warm-up pass per method (so every method reads from a warm GDAL block cache). Within a
pass the methods take turns on blocks of ``--block`` chips, in an order that rotates from block to
block, and a method's pass time is the sum of its blocks: on a shared machine a burst of load from
elsewhere then hits every method alike instead of whichever pass it happened to fall in.

Usage::

    .venv/bin/python -m benchmarks.data_throughput [--data PATH] [--chips 300] [--repeats 5]
        [--json out.json] [--plot out.png] [--quick] [--no-torchgeo] [--profile 25]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import hashlib
import io
import math
import os
import platform
import pstats
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.coords import BoundingBox
from rasterio.enums import Resampling
from rasterio.env import get_gdal_config
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window, from_bounds
from rasterio.windows import bounds as window_bounds

from benchmarks.report import atomic_write, write_json
from fusion.data.align import AlignedScene, align
from fusion.data.readers.band_folder import open_band_folders
from fusion.data.sampling import random_chips
from fusion.data.scenes import group_scenes
from fusion.data.shared import shared_data_dir

#: ours/torchgeo chips-per-second ratio to reach (at least).
TARGET_OURS_OVER_TORCHGEO = 10.0
#: raw/ours chips-per-second ratio to stay within (at most).
TARGET_RAW_OVER_OURS = 1.5

Chip = tuple[int, BoundingBox]  # (scene index, bounds in the scene's CRS)


def default_data() -> Path:
    return shared_data_dir() / "major-tom"


# ---------------------------------------------------------------------------------------------
# Scenes and chips
# ---------------------------------------------------------------------------------------------


def load_scenes(data: Path, size_m: float) -> tuple[list[AlignedScene], list[str]]:
    """Aligned scenes under ``data`` large enough for one chip, and notes on what was left out."""
    notes: list[str] = []
    sources = open_band_folders([data])
    if not sources:
        raise SystemExit(f"no band folders found under {data}")
    scenes = []
    for group in group_scenes(sources):
        scene = align(group)
        if min(scene.size_m) + 1e-6 < size_m:
            notes.append(
                f"scene {scene.meta.get('sensors')} at {scene.bounds} is smaller than a chip"
            )
            continue
        scenes.append(scene)
    if not scenes:
        raise SystemExit(f"no scene under {data} fits a {size_m:g} m chip")
    return scenes, notes


def draw_chips(scenes: Sequence[AlignedScene], size_m: float, n: int, seed: int) -> list[Chip]:
    """``n`` random chips spread evenly over the scenes (seeded), interleaved scene by scene."""
    k = len(scenes)
    per_scene = [
        random_chips(s, size_m, n // k + (i < n % k), seed=seed + i) for i, s in enumerate(scenes)
    ]
    chips: list[Chip] = []
    for j in range(max(len(p) for p in per_scene)):
        chips.extend((i, p[j]) for i, p in enumerate(per_scene) if j < len(p))
    return chips


def band_paths(scene: AlignedScene) -> list[tuple[str, str]]:
    """(stream key, band file) for every band of the scene, streams finest first."""
    out = []
    for key, a in sorted(scene.streams.items(), key=lambda kv: kv[1].grid.res[0]):
        for reader in a.readers:
            source = getattr(reader, "source", reader)  # a WarpedBand wraps its FileBand
            path = getattr(source, "path", None)
            if path is None:
                raise SystemExit(f"stream {key} of scene {scene.bounds} is not read from a file")
            out.append((key, str(path)))
    return out


def fingerprint(footprints: Sequence[tuple[int, Sequence[float]]]) -> str:
    """A short hash of the (scene, bounds) each chip covered, rounded to the centimetre."""
    text = ";".join(f"{i}:" + ",".join(f"{v:.2f}" for v in b) for i, b in footprints)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------------------------


@dataclass
class Method:
    """A loader under test: ``read(chip)`` returns whatever it produces for one chip."""

    name: str
    description: str
    read: Callable[[Chip], Any]
    footprint: Callable[[Chip, Any], Sequence[float]]
    shape: Callable[[Any], Any]
    times_s: list[float] = field(default_factory=list)
    fingerprint: str = ""
    example_shape: Any = None


def make_ours(scenes: Sequence[AlignedScene]) -> Method:
    def read(chip: Chip) -> Any:
        i, bounds = chip
        return scenes[i].read_chip(bounds)

    return Method(
        "ours",
        "AlignedScene.read_chip → Sample of torch tensors at native resolution, masks applied",
        read,
        footprint=lambda chip, s: s.meta["bounds"],
        shape=lambda s: {k: list(v.shape) for k, v in s.data.items()},
    )


def _open_on_crs(path: str, crs: Any) -> Any:
    """An open handle of ``path`` in ``crs`` (a WarpedVRT when the file is in another CRS)."""
    ds = rasterio.open(path)
    if ds.crs == crs:
        return ds
    return WarpedVRT(ds, crs=crs, resampling=Resampling.bilinear)


def make_naive(scenes: Sequence[AlignedScene], size_m: float) -> tuple[Method, list[Any]]:
    handles: list[list[Any]] = []
    shapes: list[tuple[int, int]] = []
    for scene in scenes:
        handles.append([_open_on_crs(p, scene.crs) for _, p in band_paths(scene)])
        fine = min(a.grid.res[0] for a in scene.streams.values())
        n = math.ceil(size_m / fine - 1e-6)
        shapes.append((n, n))

    def read(chip: Chip) -> Any:
        i, b = chip
        hs, shape = handles[i], shapes[i]
        out = np.empty((len(hs), *shape), dtype=np.float32)
        for c, h in enumerate(hs):
            window = from_bounds(*b, transform=h.transform)
            out[c] = h.read(1, window=window, out_shape=shape, resampling=Resampling.bilinear)
        return torch.from_numpy(out), b

    method = Method(
        "naive",
        "per chip, every band read and resampled (bilinear, out_shape) to the 10 m grid, "
        "stacked into one (C, H, W) tensor; open handles, no masks",
        read,
        footprint=lambda chip, r: tuple(r[1]),
        shape=lambda r: list(r[0].shape),
    )
    return method, [h for hs in handles for h in hs]


def make_raw(
    scenes: Sequence[AlignedScene], chips: Sequence[Chip], size_m: float
) -> tuple[Method, list[Any]]:
    handles = [[rasterio.open(p) for _, p in band_paths(s)] for s in scenes]
    windows: list[list[Window]] = []
    for i, b in chips:
        scene, ws = scenes[i], []
        for h in handles[i]:
            res = abs(h.transform.a)
            n = math.ceil(size_m / res - 1e-6)  # same pixel count as ours (60 m: 11 px)
            sb = (b.left, b.top - n * res, b.left + n * res, b.top)
            if h.crs != scene.crs:
                sb = transform_bounds(scene.crs, h.crs, *sb)
            w = from_bounds(*sb, transform=h.transform)
            ws.append(w.round_offsets().round_lengths())
        windows.append(ws)
    index = {chip: k for k, chip in enumerate(chips)}

    def read(chip: Chip) -> Any:
        hs, ws = handles[chip[0]], windows[index[chip]]
        return [h.read(1, window=w) for h, w in zip(hs, ws, strict=True)]

    def footprint(chip: Chip, _: Any) -> Sequence[float]:
        h, w = handles[chip[0]][0], windows[index[chip]][0]  # the finest band's window
        left, _, _, top = window_bounds(w, h.transform)
        size = chip[1].right - chip[1].left
        return (left, top - size, left + size, top)

    method = Method(
        "raw",
        "the same native-resolution windows (precomputed) read with rasterio on open handles; "
        "no alignment, tensors or masks",
        read,
        footprint=footprint,
        shape=lambda r: [list(a.shape) for a in r],
    )
    return method, [h for hs in handles for h in hs]


def torchgeo_version() -> tuple[str | None, str]:
    """torchgeo's version, or None and the reason it cannot be imported."""
    try:
        import torchgeo
        import torchgeo.datasets
    except Exception as err:  # ImportError, or any error raised while importing
        return None, f"{type(err).__name__}: {err}"
    return str(torchgeo.__version__), ""


def make_torchgeo(scenes: Sequence[AlignedScene], version: str) -> Method:
    from torchgeo.datasets import RasterDataset

    major_minor = tuple(int(x) for x in re.findall(r"\d+", version)[:2])
    geoslice = major_minor >= (0, 8)
    datasets = []
    for n, scene in enumerate(scenes):
        by_stream: dict[str, list[Path]] = {}
        for key, path in band_paths(scene):
            by_stream.setdefault(key, []).append(Path(path))
        parts = []
        for key, paths in by_stream.items():  # finest first: the intersection takes its res
            tokens = [p.stem.rsplit("_", 1)[-1] for p in paths]
            first = paths[0]
            prefix = first.stem[: len(first.stem) - len(tokens[0])]
            regex = (
                "^"
                + re.escape(prefix)
                + "(?P<band>"
                + "|".join(re.escape(t) for t in tokens)
                + ")"
                + re.escape(first.suffix)
                + "$"
            )
            cls = type(
                f"Bench{n}_{key}",
                (RasterDataset,),
                {
                    "filename_glob": first.name,
                    "filename_regex": regex,
                    "separate_files": True,
                    "all_bands": tuple(tokens),
                    "is_image": True,
                },
            )
            roots = sorted({str(p.parent) for p in paths})
            parts.append(cls(paths=roots, crs=scene.crs, bands=tokens))
        with contextlib.redirect_stdout(io.StringIO()):  # "Converting ... res" chatter
            ds = parts[0]
            for part in parts[1:]:
                ds = ds & part
        datasets.append(ds)

    def read(chip: Chip) -> Any:
        i, b = chip
        ds = datasets[i]
        if geoslice:
            return ds[b.left : b.right, b.bottom : b.top]
        from torchgeo.datasets import BoundingBox as TGBox  # torchgeo < 0.8 (untested here)

        full = ds.bounds
        return ds[TGBox(b.left, b.right, b.bottom, b.top, full.mint, full.maxt)]

    def footprint(chip: Chip, s: Any) -> Sequence[float]:
        q = s["bounds"]
        if isinstance(q, tuple):  # (x slice, y slice[, t slice])
            return (q[0].start, q[1].start, q[0].stop, q[1].stop)
        return (q.minx, q.miny, q.maxx, q.maxy)

    how = (
        "GeoSlice ds[left:right, bottom:top]"
        if geoslice
        else "torchgeo BoundingBox(minx, maxx, miny, maxy, mint, maxt)"
    )
    return Method(
        "torchgeo",
        f"torchgeo {version}: per-resolution RasterDatasets (separate_files) joined with &, one "
        f"IntersectionDataset per cell in its own CRS, same footprints queried with {how} "
        "(not RandomGeoSampler); output resampled to the first (10 m) dataset's res; no masks",
        read,
        footprint=footprint,
        shape=lambda s: list(s["image"].shape),
    )


# ---------------------------------------------------------------------------------------------
# Timing and reporting
# ---------------------------------------------------------------------------------------------


def run_pass(method: Method, chips: Sequence[Chip]) -> float:
    read = method.read
    t0 = time.perf_counter()
    for chip in chips:
        read(chip)
    return time.perf_counter() - t0


def run_interleaved(methods: Sequence[Method], chips: Sequence[Chip], block: int) -> None:
    """One timed pass per method, the methods taking turns on blocks of chips (rotating order)."""
    totals = [0.0] * len(methods)
    for k, start in enumerate(range(0, len(chips), block)):
        part = chips[start : start + block]
        for j in range(len(methods)):
            i = (j + k) % len(methods)
            totals[i] += run_pass(methods[i], part)
    for m, total in zip(methods, totals, strict=True):
        m.times_s.append(total)


def warm_up(method: Method, chips: Sequence[Chip]) -> None:
    """One untimed pass that also records the footprints read and an output shape."""
    footprints = []
    for chip in chips:
        out = method.read(chip)
        footprints.append((chip[0], method.footprint(chip, out)))
        if method.example_shape is None:
            method.example_shape = method.shape(out)
    method.fingerprint = fingerprint(footprints)


def summarise(methods: Sequence[Method], n_chips: int) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for m in methods:
        median = statistics.median(m.times_s)
        rows[m.name] = {
            "chips_per_s": n_chips / median,
            "ms_per_chip": 1000 * median / n_chips,
            "median_s": median,
            "times_s": list(m.times_s),
            "spread": (max(m.times_s) - min(m.times_s)) / median,
            "chips": n_chips,
            "footprints_sha1": m.fingerprint,
            "output_shape_first_chip": m.example_shape,
            "description": m.description,
        }
    ours = rows["ours"]["chips_per_s"]
    for row in rows.values():
        row["speed_vs_ours"] = row["chips_per_s"] / ours
    return rows


def _paired(rows: dict[str, dict[str, Any]], fast: str, slow: str) -> list[float]:
    """fast/slow chips-per-second ratio in each repeat (the methods shared that repeat's load)."""
    return [
        s / f for f, s in zip(rows[fast]["times_s"], rows[slow]["times_s"], strict=True) if f > 0
    ]


def targets(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The two target ratios, from the medians (as in the table), with per-repeat ratios."""
    out: dict[str, dict[str, Any]] = {}
    ours = rows["ours"]["chips_per_s"]
    if "torchgeo" in rows:
        r = ours / rows["torchgeo"]["chips_per_s"]
        out["ours_over_torchgeo"] = {
            "value": r,
            "target": f">= {TARGET_OURS_OVER_TORCHGEO:g}",
            "pass": r >= TARGET_OURS_OVER_TORCHGEO,
            "per_repeat": _paired(rows, "ours", "torchgeo"),
        }
    else:
        out["ours_over_torchgeo"] = {"value": None, "target": ">= 10", "pass": None}
    r = rows["raw"]["chips_per_s"] / ours
    out["raw_over_ours"] = {
        "value": r,
        "target": f"<= {TARGET_RAW_OVER_OURS:g}",
        "pass": r <= TARGET_RAW_OVER_OURS,
        "per_repeat": _paired(rows, "raw", "ours"),
    }
    return out


def markdown(rows: dict[str, dict[str, Any]], goals: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| method | chips/s | ms/chip | speed vs ours |",
        "|---|---:|---:|---:|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['chips_per_s']:.1f} | {row['ms_per_chip']:.3f} "
            f"| {row['speed_vs_ours']:.2f}× |"
        )
    lines.append("")
    labels = {"ours_over_torchgeo": "ours/torchgeo", "raw_over_ours": "raw/ours"}
    for key, goal in goals.items():
        if goal["value"] is None:
            lines.append(f"- {labels[key]}: n/a (torchgeo not run) — target {goal['target']}")
        else:
            verdict = "PASS" if goal["pass"] else "MISS"
            lines.append(
                f"- {labels[key]}: {goal['value']:.2f}× (target {goal['target']}×) **{verdict}**"
            )
    return "\n".join(lines)


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine_info(tg_version: str | None) -> dict[str, Any]:
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        affinity = None
    with rasterio.Env():
        cachemax = get_gdal_config("GDAL_CACHEMAX")
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "rasterio": rasterio.__version__,
        "gdal": rasterio.__gdal_version__,
        "gdal_cachemax": cachemax,
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torchgeo": tg_version,
    }


def write_plot(path: Path, rows: dict[str, dict[str, Any]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    values = [rows[n]["chips_per_s"] for n in names]
    colours = ["tab:green" if n == "ours" else "tab:gray" for n in names]
    fig, ax = plt.subplots(figsize=(6.5, 3.5), dpi=120)
    bars = ax.bar(names, values, color=colours)
    ax.bar_label(bars, labels=[f"{v:.0f}" for v in values], padding=2)
    ax.set_ylabel("chips / s (higher is better)")
    ax.set_title(title, fontsize=9)
    ax.margins(y=0.15)
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png"), mode="wb")
    plt.close(fig)


def profile_ours(method: Method, chips: Sequence[Chip], top: int) -> str:
    prof = cProfile.Profile()
    prof.enable()
    run_pass(method, chips)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--data", type=Path, default=None, help="folder tree of band GeoTIFFs")
    p.add_argument("--chips", type=int, default=300, help="chips per timed pass")
    p.add_argument("--repeats", type=int, default=5, help="timed passes per method (median)")
    p.add_argument("--size-m", type=float, default=640.0, help="chip size in metres")
    p.add_argument("--seed", type=int, default=0, help="seed of the chip positions")
    p.add_argument(
        "--block", type=int, default=25, help="chips per turn when the methods alternate"
    )
    p.add_argument("--quick", action="store_true", help="few chips, one repeat (for tests)")
    p.add_argument("--no-torchgeo", action="store_true", help="leave torchgeo out")
    p.add_argument("--json", type=Path, default=None, help="write the numbers here")
    p.add_argument("--plot", type=Path, default=None, help="write a PNG bar chart here")
    p.add_argument("--profile", type=int, default=0, metavar="N", help="cProfile ours, print top N")
    args = p.parse_args(argv)
    if args.quick:
        args.chips, args.repeats = min(args.chips, 12), 1
    if min(args.chips, args.repeats, args.block) < 1:
        p.error("--chips, --repeats and --block must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; prints the table and returns what ``--json`` writes."""
    args = parse_args(argv)
    data = (args.data or default_data()).resolve()
    if not data.exists():
        raise SystemExit(f"data folder {data} does not exist (pass --data PATH)")
    scenes, notes = load_scenes(data, args.size_m)
    chips = draw_chips(scenes, args.size_m, args.chips, args.seed)
    n_bands = {len(band_paths(s)) for s in scenes}

    methods = [make_ours(scenes)]
    handles: list[Any] = []
    naive, hs = make_naive(scenes, args.size_m)
    methods.append(naive)
    handles += hs
    tg_version, tg_reason = (None, "--no-torchgeo") if args.no_torchgeo else torchgeo_version()
    if tg_version is not None:
        methods.append(make_torchgeo(scenes, tg_version))
    else:
        notes.append(f"torchgeo not run ({tg_reason})")
    raw, hs = make_raw(scenes, chips, args.size_m)
    methods.append(raw)
    handles += hs

    load_before = load_average()
    try:
        for m in methods:
            warm_up(m, chips)
        for _ in range(args.repeats):
            run_interleaved(methods, chips, args.block)
        prof = profile_ours(methods[0], chips, args.profile) if args.profile else ""
    finally:
        for h in handles:
            h.close()

    rows = summarise(methods, len(chips))
    goals = targets(rows)
    settings = (
        f"{len(chips)} chips of {args.size_m:g} m × {args.repeats} repeats (median), "
        f"{len(scenes)} scene(s), {'/'.join(map(str, sorted(n_bands)))} bands, "
        f"seed {args.seed}, data {data}"
    )
    info = machine_info(tg_version)
    info["loadavg_before"], info["loadavg_after"] = load_before, load_average()
    busy = max((la[0] for la in (load_before, info["loadavg_after"]) if la), default=0.0)
    if busy > (info["cpu_count"] or 1) - 0.5:  # more runnable work than cores, ours included
        notes.append(
            f"machine busy (1-min load up to {busy:.2f} on {info['cpu_count']} cpus): other "
            "processes competed for the cores, so the numbers are noisy; re-run on an idle machine"
        )
    print(f"## Data throughput: {settings}")
    print(
        f"cpus {info['cpu_count']}, rasterio {info['rasterio']}, GDAL {info['gdal']}, "
        f"torch {info['torch']}, torchgeo {tg_version or 'absent'}; single process"
    )
    print()
    print(markdown(rows, goals))
    print()
    for m in methods:
        print(f"- {m.name}: {m.description}; first chip → {m.example_shape}")
    for note in notes:
        print(f"- note: {note}")
    if len({m.fingerprint for m in methods}) != 1:
        print("- WARNING: the methods did not read the same footprints:", file=sys.stderr)
        for m in methods:
            print(f"    {m.name}: {m.fingerprint}", file=sys.stderr)
    if prof:
        print("\n### cProfile of ours (one pass, sorted by own time)\n```")
        print(prof.rstrip())
        print("```")

    report: dict[str, Any] = {
        "benchmark": "data_throughput",
        "data": str(data),
        "chip_size_m": args.size_m,
        "chips": len(chips),
        "repeats": args.repeats,
        "seed": args.seed,
        "block": args.block,
        "scenes": [
            {
                "crs": s.crs.to_string(),
                "bounds": list(s.bounds),
                "streams": s.chip_shapes(args.size_m),
            }
            for s in scenes
        ],
        "bands": sorted(n_bands),
        "same_footprints": len({m.fingerprint for m in methods}) == 1,
        "methods": rows,
        "targets": goals,
        "machine": info,
        "notes": notes,
    }
    if args.json:
        write_json(args.json, report)
    if args.plot:
        write_plot(args.plot, rows, f"{len(chips)} chips of {args.size_m:g} m, {data.name}")
    return report


if __name__ == "__main__":
    main()

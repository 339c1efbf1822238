from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from fusion.data.align import AlignedScene, align
from fusion.data.collate import collate_samples
from fusion.data.errors import ChipError
from fusion.data.readers.band_folder import open_band_folder
from fusion.data.sampling import ChipDataset, ChipRef, grid_chips, random_chips, spatial_block_split
from tests.data.generated import write_s1_folder, write_s2_folder


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> AlignedScene:
    root = tmp_path_factory.mktemp("scene")
    s2 = open_band_folder(write_s2_folder(root / "s2", size_m=3840))
    s1 = open_band_folder(write_s1_folder(root / "s1", size_m=3840))
    return align([s1, s2])


def test_grid_chips_tile_the_footprint(scene: AlignedScene) -> None:
    chips = grid_chips(scene, 960)
    assert len(chips) == 16
    assert chips[0].left == scene.bounds.left and chips[0].top == scene.bounds.top
    assert chips[-1].right == scene.bounds.right and chips[-1].bottom == scene.bounds.bottom
    overlapping = grid_chips(scene, 960, stride_m=480)
    assert len(overlapping) == 49


def test_random_chips_are_seeded_on_the_lattice_and_inside(scene: AlignedScene) -> None:
    a, b = random_chips(scene, 640, 50, seed=3), random_chips(scene, 640, 50, seed=3)
    assert a == b and a != random_chips(scene, 640, 50, seed=4)
    for c in a:
        assert (c.left - scene.bounds.left) % scene.lattice_m == 0
        assert scene.bounds.left <= c.left and c.right <= scene.bounds.right
        assert scene.bounds.bottom <= c.bottom and c.top <= scene.bounds.top


def test_chip_larger_than_footprint_is_refused(scene: AlignedScene) -> None:
    with pytest.raises(ChipError, match="does not fit"):
        grid_chips(scene, 5000)


def test_spatial_block_split_never_shares_a_block(scene: AlignedScene) -> None:
    chips = [ChipRef(0, b) for b in grid_chips(scene, 240, stride_m=120)]
    block = 960.0
    splits = spatial_block_split([scene], chips, block_m=block, seed=0)
    assert sum(len(v) for v in splits.values()) < len(chips)  # straddling chips are dropped
    assert all(len(v) > 0 for v in splits.values())

    def blocks(ref: ChipRef) -> set[tuple[int, int]]:
        b = ref.bounds
        return {
            (int(x // block), int(y // block))
            for x in (b.left, b.right - 1e-6)
            for y in (b.bottom, b.top - 1e-6)
        }

    seen: dict[tuple[int, int], str] = {}
    for name, refs in splits.items():
        for ref in refs:
            for blk in blocks(ref):
                assert seen.setdefault(blk, name) == name  # a block belongs to one split
    # deterministic by seed
    again = spatial_block_split([scene], chips, block_m=block, seed=0)
    assert again == splits


def test_dataset_and_loader_batch_native_resolutions(scene: AlignedScene) -> None:
    ds = ChipDataset.gridded([scene], 1200, label_fn=lambda s, b: int(b.left) % 7)
    loader = DataLoader(ds, batch_size=3, collate_fn=collate_samples, num_workers=0)
    batch = next(iter(loader))
    assert batch.data["s1_grd"].shape == (3, 2, 120, 120)
    assert batch.data["s2_l2a_20m"].shape == (3, 6, 60, 60)
    assert batch.data["s2_l2a_60m"].shape == (3, 2, 20, 20)
    assert batch.present["s1_grd"].all()
    assert batch.labels is not None and batch.labels.dtype == torch.int64


def test_dataset_pickles_into_worker_processes(scene: AlignedScene) -> None:
    ds = ChipDataset.gridded([scene], 1200)
    loader = DataLoader(ds, batch_size=2, collate_fn=collate_samples, num_workers=2)
    n = sum(len(b) for b in loader)
    assert n == len(ds) == 9


def test_missing_sensor_scene_yields_absent_stream(tmp_path: Path) -> None:
    s2 = open_band_folder(write_s2_folder(tmp_path / "a", size_m=1200))
    s1 = open_band_folder(write_s1_folder(tmp_path / "b", size_m=1200))
    both, only = align([s1, s2]), align([s2])
    ds = ChipDataset.gridded([both, only], 1200)
    batch = collate_samples([ds[0], ds[1]])
    assert batch.present["s1_grd"].tolist() == [True, False]
    assert "s1_grd" not in ds[1].data  # absent in the Sample, not zero-filled


def test_window_dataset_over_basicmotions(shared_data: Path) -> None:
    from fusion.data.readers.ts_file import case_to_sources, read_ts_file
    from fusion.data.sampling import WindowDataset
    from fusion.data.timeseries import align_series

    ts = read_ts_file(shared_data / "imu" / "BasicMotions_TRAIN.ts")
    recs = [align_series(case_to_sources(v)) for v in ts.values[:4]]
    ds = WindowDataset(recs, duration_s=2.0, stride_s=1.0, labels=ts.label_indices()[:4])
    assert len(ds) == 4 * 9  # 10 s at 10 Hz: starts 0..8 s
    batch = collate_samples([ds[i] for i in range(5)])
    assert batch.data["accelerometer"].shape == (5, 3, 20)
    assert batch.data["gyroscope"].shape == (5, 3, 20)
    assert batch.labels is not None and len(set(batch.labels.tolist())) == 1

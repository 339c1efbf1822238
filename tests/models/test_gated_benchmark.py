"""The gated-ViT benchmark runs end to end on a tiny budget (numbers themselves not asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.gated_vit import main


def test_gated_vit_benchmark_quick(tmp_path: Path) -> None:
    pytest.importorskip("timm")
    out, plot = tmp_path / "gated.json", tmp_path / "gated.png"
    main(
        ["--data", "synthetic", "--epochs", "1", "--max-samples", "8", "--mac-samples", "2",
         "--width", "16", "--depth", "1", "--heads", "2",
         "--json", str(out), "--plot", str(plot)]
    )  # fmt: skip
    report = json.loads(out.read_text())
    (ds,) = report["datasets"]
    rows = {r["model"]: r for r in ds["rows"]}
    assert set(rows) == {"mobilevitv2_100", "dense", "gated"}
    assert ds["n_train"] == 8 and len(rows["gated"]["runs"]) == 1
    # same width and parameter budget; routing costs fewer MACs than the dense twin
    assert abs(rows["gated"]["parameters"] - rows["dense"]["parameters"]) < 200
    assert rows["gated"]["macs_per_sample"] < rows["dense"]["macs_per_sample"]
    assert rows["mobilevitv2_100"]["parameters"] > 4_000_000
    assert ds["targets"]["parameter_ratio"] > 4
    assert 0 <= rows["gated"]["skip_share"] <= 1
    assert plot.stat().st_size > 5_000


def test_validate_scores_a_held_out_share_of_train(tmp_path: Path) -> None:
    out = tmp_path / "val.json"
    main(
        ["--data", "synthetic", "--models", "gated", "--epochs", "1", "--mac-samples", "1",
         "--width", "16", "--depth", "1", "--heads", "2", "--validate", "0.25",
         "--pixel-channels", "4", "--json", str(out)]
    )  # fmt: skip
    (ds,) = json.loads(out.read_text())["datasets"]
    assert ds["scored_on"] == "validation" and "test unread" in ds["data"]
    total = ds["n_train"] + ds["n_test"]
    assert abs(ds["n_test"] - 0.25 * total) <= 1  # a quarter of the training split, not the test


def test_folds_score_every_sample_once(tmp_path: Path) -> None:
    out = tmp_path / "folds.json"
    main(
        ["--data", "synthetic", "--models", "gated", "--epochs", "1", "--mac-samples", "1",
         "--width", "16", "--depth", "1", "--heads", "2", "--folds", "3", "--json", str(out)]
    )  # fmt: skip
    (ds,) = json.loads(out.read_text())["datasets"]
    (row,) = ds["rows"]
    assert ds["scored_on"] == "cross-validation" and ds["folds"] == 3
    assert [r["fold"] for r in row["runs"]] == [0, 1, 2]
    assert sum(r["n_test"] for r in row["runs"]) == ds["n_test"]
    assert ds["n_train"] + ds["n_test"] // 3 in range(ds["n_test"] - 2, ds["n_test"] + 3)
    pooled = sum(r["accuracy"] * r["n_test"] for r in row["runs"]) / ds["n_test"]
    assert abs(row["accuracy"] - pooled) < 1e-3


def test_combine_joins_runs_on_the_same_folds_and_refuses_others(tmp_path: Path) -> None:
    common = ["--data", "synthetic", "--epochs", "1", "--mac-samples", "1", "--width", "16",
              "--depth", "1", "--heads", "2", "--max-samples", "8"]  # fmt: skip
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    main([*common, "--folds", "2", "--models", "gated", "--json", str(a)])
    main([*common, "--folds", "2", "--models", "dense", "--json", str(b)])
    main([*common, "--models", "dense", "--json", str(c)])  # one split, not folds
    out = tmp_path / "joined.json"
    report = main(["--combine", str(a), str(b), "--json", str(out)])
    (ds,) = report["datasets"]
    assert [r["model"] for r in ds["rows"]] == ["gated", "dense"]
    assert "gated_over_dense_macs" in ds["targets"]
    assert json.loads(out.read_text())["combined_from"] == [str(a), str(b)]
    with pytest.raises(ValueError, match="not the same splits"):
        main(["--combine", str(a), str(c)])
    with pytest.raises(ValueError, match="appears twice"):
        main(["--combine", str(a), str(a)])


def _cv_report(data: str, ref: list[tuple[int, float]], ours: list[tuple[int, float]]) -> dict:  # type: ignore[type-arg]
    def row(model: str, params: int, runs: list[tuple[int, float]]) -> dict:  # type: ignore[type-arg]
        return {
            "model": model,
            "parameters": params,
            "runs": [{"fold": f, "accuracy": a, "n_test": 10} for f, a in runs],
        }

    rows = [row("mobilevitv2_100", 4_000_000, ref), row("gated", 250_000, ours)]
    return {"epochs": 30, "datasets": [{"data": data, "folds": 2, "rows": rows}]}


def test_pool_pairs_folds_across_reports_and_partitions(tmp_path: Path) -> None:
    reports = [  # partition A twice (one seed each), partition B once (two seeds per fold)
        _cv_report("A", [(0, 0.8), (1, 0.6)], [(0, 0.7), (1, 0.6)]),
        _cv_report("A", [(0, 0.6), (1, 0.6)], [(0, 0.5), (1, 0.6)]),
        _cv_report(
            "B", [(0, 0.7), (0, 0.7), (1, 0.5), (1, 0.7)], [(0, 0.7), (0, 0.7), (1, 0.6), (1, 0.6)]
        ),
    ]
    paths = []
    for i, rep in enumerate(reports):
        paths.append(str(tmp_path / f"{i}.json"))
        Path(paths[-1]).write_text(json.dumps(rep))
    out = main(
        [
            "--pool",
            *paths,
            "--json",
            str(tmp_path / "pooled.json"),
            "--plot",
            str(tmp_path / "p.png"),
        ]
    )
    t = out["targets"]
    # per (partition, fold) lost points: A0 10, A1 0, B0 0, B1 0 → mean 2.5, s.e. 5 / 2
    assert t["accuracy_drop_per_fold_points"] == [10.0, 0.0, 0.0, 0.0]
    assert t["accuracy_drop_points"] == pytest.approx(2.5)
    assert t["accuracy_drop_standard_error_points"] == pytest.approx(2.5)
    assert t["parameter_ratio"] == 16.0 and not t["met"]
    assert out["folds"] == 4 and out["runs_per_model"] == 8
    assert out["accuracy"]["gated"] == pytest.approx(0.625)
    assert (tmp_path / "p.png").stat().st_size > 5_000
    single = {**reports[0], "datasets": [{**reports[0]["datasets"][0], "folds": None}]}
    Path(paths[0]).write_text(json.dumps(single))
    with pytest.raises(SystemExit):
        main(["--pool", *paths])
    Path(paths[0]).write_text("{not json")
    with pytest.raises(SystemExit):
        main(["--pool", *paths])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--folds", "1"], "at least 2 folds"),
        (["--validate", "1.5"], "in (0, 1)"),
        (["--drop-path", "1"], "in [0, 1)"),
        (["--combine", "missing.json"], "no such report file"),
        (["--pool", "missing.json"], "no such report file"),
        (["--stem-blocks", "0"], "at least 1"),
    ],
)
def test_bad_protocol_options_are_named(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err

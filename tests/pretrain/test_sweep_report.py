"""The sweep's verdicts come from paired tests (pretrain/sweep_report.py): constructed runs whose
answer is known, with no pretraining."""

import re
import zlib

import numpy as np

from pretrain.sweep_report import summarise, write_sweep_report

IMAGES = 1000


def runs(name: str, accuracy: float, i_nce: float, seeds=(0, 1, 2), random_init=False):
    """One result.json per seed: per-image kNN predictions right with probability `accuracy`
    (a shared difficulty per image, a seed effect of SD 2 points)."""
    labels = [i % 10 for i in range(IMAGES)]
    difficulty = np.random.default_rng(99).uniform(-0.15, 0.15, IMAGES)
    rows = []
    for seed in seeds:
        rng = np.random.default_rng(zlib.crc32(f"{name}/{seed}".encode()))
        right = rng.uniform(size=IMAGES) < accuracy + difficulty + rng.normal(0, 0.02)
        predictions = [label if ok else (label + 1) % 10 for label, ok in zip(labels, right)]
        rows.append(
            {
                "name": name,
                "label": name,
                "random_init": random_init,
                "seed": seed,
                "i_nce": i_nce + rng.normal(0, 0.02),
                "i_nce_bound": 6.93,
                "accuracy": 100 * float(np.mean(right)),
                "predictions": predictions,
                "labels": labels,
                "heldout_loss": 1.0,
                "train_loss": 1.0,
                "iterations": 200,
                "seconds": 1.0,
            }
        )
    return rows


def test_a_gain_below_its_noise_is_marked_not_significant_and_a_large_one_above():
    rows = (
        runs("random_init", 0.28, 0.0, random_init=True)
        + runs("c=0.2", 0.285, 1.0)
        + runs("c=0.8", 0.38, 2.0)
        + runs("c=1.0", 0.20, 2.5)
    )
    settings = {s["name"]: s for s in summarise(rows)["settings"]}
    small = settings["c=0.2"]
    assert abs(small["accuracy"][0] - settings["random_init"]["accuracy"][0]) < 6
    assert small["vs_random_init"]["p"] >= 0.05 and small["mark"] == "n.s."
    assert settings["c=0.8"]["mark"] == "above" and settings["c=1.0"]["mark"] == "below"
    assert settings["random_init"]["mark"] is None


def test_a_reverse_u_needs_the_peak_inside_and_both_sides_significant(tmp_path):
    base = runs("random_init", 0.28, 0.0, random_init=True)
    peaked = base + runs("c=0.08", 0.30, 0.5) + runs("c=0.6", 0.40, 1.5) + runs("c=1.0", 0.31, 2.5)
    u = summarise(peaked)["reverse_u"]
    assert u["interior"] and u["best"] == "c=0.6" and u["holds"]
    assert u["against_low"]["p"] < 0.05 and u["against_high"]["p"] < 0.05
    flat_right = (
        base + runs("c=0.08", 0.30, 0.5) + runs("c=0.6", 0.40, 1.5) + runs("c=1.0", 0.395, 2.5)
    )
    u = summarise(flat_right)["reverse_u"]
    assert u["interior"] and not u["holds"]  # the fall after the peak is within the noise
    rising = base + runs("c=0.08", 0.30, 0.5) + runs("c=0.6", 0.33, 1.5) + runs("c=1.0", 0.40, 2.5)
    assert not summarise(rising)["reverse_u"]["interior"]
    summary = write_sweep_report(peaked, [], "knn", str(tmp_path))
    table = (tmp_path / "results.md").read_text()
    assert "Both sides significant: a reverse U (the peak was picked" in table
    assert "| c=0.6 | 3 |" in table and "| above |" in table
    assert summary["spearman"]["n"] == 3
    assert (tmp_path / "reverse_u.png").read_bytes()[:4] == b"\x89PNG"


def test_a_view_split_label_keeps_its_table_row_whole(tmp_path):
    rows = runs("random_init", 0.28, 0.0, random_init=True) + runs("lab", 0.35, 0.3)
    for row in rows[3:]:
        row["label"] = "L | ab"
    write_sweep_report(rows, [], "knn", str(tmp_path))
    table_rows = [
        line
        for line in (tmp_path / "results.md").read_text().splitlines()
        if line.startswith("| L \\| ab |")
    ]
    assert len(table_rows) == 4  # the summary row and one per seed
    cells = [len(re.split(r"(?<!\\)\|", line)) - 2 for line in table_rows]
    assert cells == [7, 10, 10, 10]  # as many cells as the header: the split did not add one

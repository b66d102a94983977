#!/usr/bin/env python
"""Gather the metrics of several fine-tuning runs into one table (mean +- std over the runs of each
label, e.g. several VOC seeds) as markdown and as a PNG bar plot.

    python detection/compare.py --run infomin=output/voc_infomin_s1 --run infomin=output/voc_infomin_s2 \
        --run supervised=output/voc_sup_s1 --run random=output/voc_rand_s1 [--metrics AP AP50 AP75] \
        [--output results/voc]

Each run folder holds the metrics_eval.json that detection/train_net.py writes; --output gets
.md and .png appended.
"""  # noqa: E501 (the usage lines are --help's text as printed: a rewrap would change it)

from __future__ import annotations

import argparse
import json
import os
import statistics
from collections import defaultdict

from pretrain.common.cli import run_entry_point
from pretrain.common.errors import ConfigError, DatasetError

METRICS_FILE = "metrics_eval.json"
RUN_COUNT = "_runs"  # bookkeeping entry of each row: one element per run


def read_runs(runs: list[tuple[str, str]]) -> dict:
    """{(dataset, task): {label: {metric: [values over runs]}}}"""
    table = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for label, folder in runs:
        path = os.path.join(folder, METRICS_FILE)
        if not os.path.isfile(path):
            raise DatasetError(f"run {label}={folder}: no {METRICS_FILE} in it")
        with open(path) as f:
            results = json.load(f)
        for dataset, tasks in results.items():
            for task, metrics in tasks.items():
                row = table[(dataset, task)][label]  # a row even if every metric is undefined
                row[RUN_COUNT].append(1.0)
                for metric, value in metrics.items():
                    if value is not None:
                        row[metric].append(float(value))
    return table


def mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def markdown(table: dict, metrics: list[str]) -> str:
    lines = []
    for (dataset, task), by_label in table.items():
        lines += [
            f"### {dataset} / {task}",
            "",
            "| init | runs | " + " | ".join(metrics) + " |",
            "|---|---|" + "---|" * len(metrics),
        ]
        for label, values in by_label.items():
            cells = []
            for metric in metrics:
                if not values.get(metric):
                    cells.append("n/a")
                    continue
                mean, std = mean_std(values[metric])
                cells.append(f"{mean:.1f}" + (f" ± {std:.1f}" if std is not None else ""))
            runs = len(values.get(RUN_COUNT, []))
            lines.append(f"| {label} | {runs} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def bar_plot(table: dict, metrics: list[str], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(table.items())
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, ((dataset, task), by_label) in zip(axes[0], panels):
        labels = list(by_label)
        width = 0.8 / max(1, len(labels))
        for i, label in enumerate(labels):
            stats = [
                mean_std(by_label[label][m]) if by_label[label].get(m) else (0.0, None)
                for m in metrics
            ]
            xs = [j + i * width for j in range(len(metrics))]
            ax.bar(
                xs,
                [s[0] for s in stats],
                width,
                yerr=[s[1] or 0.0 for s in stats],
                capsize=3,
                label=label,
            )
        ax.set_xticks([j + width * (len(labels) - 1) / 2 for j in range(len(metrics))])
        ax.set_xticklabels(metrics)
        ax.set_title(f"{dataset} / {task}")
        ax.set_ylabel("AP (%)")
    # One legend below the panels: inside one, it covered the tallest bars.
    handles, names = axes[0][0].get_legend_handles_labels()
    rows = -(-len(names) // 3)
    fig.legend(handles, names, loc="lower center", ncol=min(3, len(names)), fontsize=9)
    fig.tight_layout(rect=(0, 0.06 * rows, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", action="append", required=True, metavar="LABEL=FOLDER")
    parser.add_argument("--metrics", nargs="+", default=["AP", "AP50", "AP75"])
    parser.add_argument("--output", default="", help="write OUTPUT.md and OUTPUT.png")
    args = parser.parse_args(argv)
    runs = []
    for spec in args.run:
        label, sep, folder = spec.partition("=")
        if not sep:
            raise ConfigError(f"--run {spec!r}: expected LABEL=FOLDER")
        runs.append((label, folder))
    table = read_runs(runs)
    text = markdown(table, args.metrics)
    print(text)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output + ".md", "w") as f:
            f.write(text + "\n")
        bar_plot(table, args.metrics, args.output + ".png")
        print(f"wrote {args.output}.md and {args.output}.png")
    return 0


def entry_point() -> None:
    run_entry_point(main)


if __name__ == "__main__":
    entry_point()

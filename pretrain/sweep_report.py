"""A sweep's results as claims with their tests: results.json / .csv / .md and reverse_u.png.

Runs are grouped by setting (one run per seed). Each setting gets its I_NCE and readout as mean ± SD
over seeds and, with a kNN readout, a paired bootstrap against random init over the seeds both
have and the shared test images (evaluation/paired_tests.py): its mark is "above" or "below" only
where that test is significant at 5%, else "n.s.". Across the trained settings: Spearman's rho
between mean I_NCE and mean accuracy with its interval, and the reverse-U test: the best setting
against each end of the I_NCE axis. A reverse U is claimed only when the best setting lies inside
the axis and both tests are significant. The peak is picked from the same runs it is tested on,
which makes that test somewhat optimistic; a peak named before the sweep is the stricter claim.
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics

import numpy as np

from .engine.checkpoint import atomic_write_text
from .evaluation.paired_tests import correct_per_image, paired_bootstrap, significant, spearman

READOUT_NAMES = {"knn": "kNN", "linear": "linear readout"}
RUN_COLUMNS = (
    "label",
    "seed",
    "i_nce",
    "i_nce_bound",
    "i_er",
    "accuracy",
    "heldout_loss",
    "heldout_acc",
    "train_loss",
    "iterations",
    "seconds",
    "name",
)
MARKS = {True: "above", False: "below", None: "n.s."}


def _mean_sd(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def paired_runs_test(runs_a: list[dict], runs_b: list[dict]) -> dict | None:
    """The paired bootstrap of A's accuracy minus B's over the seeds both have (None without
    per-image predictions, or without a common seed)."""
    by_seed_b = {run.get("seed"): run for run in runs_b}
    pairs = [(run, by_seed_b[run.get("seed")]) for run in runs_a if run.get("seed") in by_seed_b]
    if not pairs or any("predictions" not in run for pair in pairs for run in pair):
        return None
    if any(a["labels"] != b["labels"] for a, b in pairs):
        return None  # not the same test images: no pairing
    return paired_bootstrap(
        np.stack([correct_per_image(a) for a, _ in pairs]),
        np.stack([correct_per_image(b) for _, b in pairs]),
    )


def summarise(rows: list[dict]) -> dict:
    """{"settings": one entry per setting (means, SDs, test against random init, mark),
    "spearman": rho of I_NCE and accuracy across the trained settings, "reverse_u": the test of
    the best setting against both ends}."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["name"], []).append(row)
    baseline = next((runs for runs in groups.values() if runs[0]["random_init"]), None)
    settings = []
    for name, runs in groups.items():
        entry = {
            "name": name,
            "label": runs[0]["label"],
            "random_init": runs[0]["random_init"],
            "seeds": [run.get("seed") for run in runs],
            "i_nce": _mean_sd([run["i_nce"] for run in runs]),
            # results written before the ER monitor have no I_ER
            "i_er": (
                _mean_sd([run["i_er"] for run in runs])
                if all("i_er" in run for run in runs)
                else (None, None)
            ),
            "accuracy": _mean_sd([run["accuracy"] for run in runs]),
            "vs_random_init": None,
            "mark": None,
        }
        if baseline is not None and not entry["random_init"]:
            test = paired_runs_test(runs, baseline)
            entry["vs_random_init"] = test
            if test is not None:
                entry["mark"] = MARKS[test["difference"] > 0] if significant(test) else "n.s."
        entry["runs"] = runs
        settings.append(entry)
    trained = [s for s in settings if not s["random_init"]]
    rho = (
        spearman([s["i_nce"][0] for s in trained], [s["accuracy"][0] for s in trained])
        if len(trained) >= 2
        else None
    )
    return {"settings": settings, "spearman": rho, "reverse_u": reverse_u_test(trained)}


def reverse_u_test(trained: list[dict]) -> dict | None:
    """The best setting (highest mean accuracy) against the settings of lowest and highest mean
    I_NCE, each by the paired test over their common seeds. A reverse U needs the best inside
    the axis and both tests significant."""
    if len(trained) < 3:
        return None
    by_info = sorted(trained, key=lambda s: s["i_nce"][0])
    best = max(trained, key=lambda s: s["accuracy"][0])
    low, high = by_info[0], by_info[-1]
    if best is low or best is high:
        return {
            "best": best["label"],
            "interior": False,
            "holds": False,
            "against_low": None,
            "against_high": None,
            "low": low["label"],
            "high": high["label"],
        }
    against_low = paired_runs_test(best["runs"], low["runs"])
    against_high = paired_runs_test(best["runs"], high["runs"])
    holds = all(
        t is not None and significant(t) and t["difference"] > 0
        for t in (against_low, against_high)
    )
    return {
        "best": best["label"],
        "interior": True,
        "holds": holds,
        "low": low["label"],
        "high": high["label"],
        "against_low": against_low,
        "against_high": against_high,
    }


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _pm(mean_sd: tuple[float, float | None], digits: int) -> str:
    mean, sd = mean_sd
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None else "")


def _test_cell(test: dict | None) -> str:
    if test is None:
        return "-"
    low, high = test["ci"]
    return f"{test['difference']:+.1f} [{low:+.1f}, {high:+.1f}], p {test['p']:.3g}"


def _cell(label: str) -> str:
    """A label as a table cell: a view split such as "L | ab" must not end the cell."""
    return label.replace("|", "\\|")


def markdown(summary: dict, missing: list[str], readout: str) -> str:
    name = READOUT_NAMES[readout]
    lines = [
        f"| setting | seeds | I_NCE (nats, mean ± SD) | I_ER (nats, mean ± SD) "
        f"| {name} top-1 (%, mean ± SD) | vs random init: diff [95% CI], p | mark |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in summary["settings"]:
        lines.append(
            f"| {_cell(s['label'])} | {len(s['seeds'])} | {_pm(s['i_nce'], 3)} "
            f"| {_pm(s['i_er'], 3)} "
            f"| {_pm(s['accuracy'], 2)} | {_test_cell(s['vs_random_init'])} "
            f"| {s['mark'] or '-'} |"
        )
    lines.append("")
    lines.append(
        "Marks: above / below = the paired bootstrap over seeds and test images against "
        "random init (same seeds) is significant at 5%; n.s. = not significant at this "
        "budget; - = no test (no per-image predictions or no common seed)."
    )
    rho = summary["spearman"]
    if rho is not None:
        ci = (
            f"95% CI {rho['ci'][0]:+.2f} to {rho['ci'][1]:+.2f}"
            if rho["ci"]
            else "no interval below 4 settings"
        )
        lines.append(
            f"\nSpearman's rho between I_NCE and {name} accuracy across "
            f"{rho['n']} settings: {_fmt(rho['rho'], 2)} ({ci})."
        )
    u = summary["reverse_u"]
    if u is not None:
        if not u["interior"]:
            lines.append(
                f"\nReverse U: not seen; the best setting ({u['best']}) is an end of "
                f"the I_NCE axis."
            )
        else:
            lines.append(
                f"\nReverse U: the best setting, {u['best']}, against the lowest-I_NCE "
                f"end ({u['low']}): {_test_cell(u['against_low'])}; against the highest "
                f"({u['high']}): {_test_cell(u['against_high'])}. "
                + (
                    "Both sides significant: a reverse U (the peak was picked from these "
                    "runs, which makes the test somewhat optimistic)."
                    if u["holds"]
                    else "Not both sides significant: no reverse U at this budget."
                )
            )
    lines += [
        "",
        "Runs:",
        "",
        "| setting | seed | I_NCE | bound log N | I_ER | top-1 (%) "
        "| held-out loss | train loss | iterations | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary["settings"]:
        for r in s["runs"]:
            lines.append(
                f"| {_cell(r['label'])} | {r.get('seed', '-')} | {_fmt(r['i_nce'])} "
                f"| {_fmt(r['i_nce_bound'])} | {_fmt(r.get('i_er'))} "
                f"| {_fmt(r['accuracy'], 2)} "
                f"| {_fmt(r['heldout_loss'])} | {_fmt(r['train_loss'])} "
                f"| {r['iterations']} | {_fmt(r['seconds'], 0)} |"
            )
    if missing:
        lines.append("")
        lines.append(f"Not finished yet: {', '.join(missing)}.")
    return "\n".join(lines) + "\n"


def _json_summary(summary: dict) -> dict:
    """The summary without each setting's runs (they are results.json's "rows")."""
    return {
        **summary,
        "settings": [{k: v for k, v in s.items() if k != "runs"} for s in summary["settings"]],
    }


def write_sweep_report(rows: list[dict], missing: list[str], readout: str, out: str) -> dict:
    """results.json (every run, the per-setting summary and tests), results.csv (every run),
    results.md and reverse_u.png in `out`; returns the summary."""
    summary = summarise(rows)
    os.makedirs(out, exist_ok=True)
    slim_rows = [{k: v for k, v in r.items() if k not in ("predictions", "labels")} for r in rows]
    atomic_write_text(
        json.dumps(
            {
                "readout": readout,
                "rows": slim_rows,
                "missing": missing,
                "summary": _json_summary(summary),
            },
            indent=2,
        )
        + "\n",
        os.path.join(out, "results.json"),
    )
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, RUN_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_text(markdown(summary, missing, readout), os.path.join(out, "results.md"))
    if rows:
        plot_reverse_u(summary, readout, os.path.join(out, "reverse_u.png"))
    return summary


def plot_reverse_u(summary: dict, readout: str, path: str) -> None:
    """Mean readout accuracy against mean I_NCE per setting (left) and against mean I_ER
    (right, where the runs measured it), error bars one SD over seeds each way; random init as a
    dashed line; filled green / red where the paired test puts a setting above / below random
    init, hollow where it is not significant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = summary["settings"]
    axes_keys = ["i_nce"] + (["i_er"] if all(s["i_er"][0] is not None for s in settings) else [])
    fig, axes = plt.subplots(1, len(axes_keys), figsize=(7 * len(axes_keys), 5), squeeze=False)
    for ax, key in zip(axes[0], axes_keys):
        _plot_accuracy_against(ax, settings, key, readout)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_accuracy_against(ax, settings: list[dict], key: str, readout: str) -> None:
    """One panel of plot_reverse_u: accuracy against the information measure `key`."""
    baseline = next((s for s in settings if s["random_init"]), None)
    if baseline is not None:
        ax.axhline(
            baseline["accuracy"][0],
            color="grey",
            linestyle="--",
            linewidth=1,
            label=f"random init ({baseline['accuracy'][0]:.1f}%)",
        )
        ax.scatter([baseline[key][0]], [baseline["accuracy"][0]], marker="x", color="grey")
    styles = {
        "above": dict(color="tab:green", label="above random init (p < 0.05)"),
        "below": dict(color="tab:red", label="below random init (p < 0.05)"),
        "n.s.": dict(
            facecolors="none", edgecolors="tab:blue", label="not significant at this budget"
        ),
        None: dict(facecolors="none", edgecolors="black", label="no test"),
    }
    trained = [s for s in settings if not s["random_init"]]
    for mark, style in styles.items():
        chosen = [s for s in trained if s["mark"] == mark]
        if not chosen:
            continue
        ax.errorbar(
            [s[key][0] for s in chosen],
            [s["accuracy"][0] for s in chosen],
            xerr=[s[key][1] or 0 for s in chosen],
            yerr=[s["accuracy"][1] or 0 for s in chosen],
            fmt="none",
            ecolor="lightgrey",
        )
        ax.scatter([s[key][0] for s in chosen], [s["accuracy"][0] for s in chosen], s=60, **style)
    for s in trained:
        ax.annotate(
            s["label"],
            (s[key][0], s["accuracy"][0]),
            textcoords="offset points",
            xytext=(5, 5),
            fontsize=8,
        )
    seeds = max((len(s["seeds"]) for s in settings), default=1)
    ax.set_ylabel(f"{READOUT_NAMES[readout]} top-1 (%), mean ± SD over {seeds} seed(s)")
    if key == "i_nce":
        for bound in {round(r["i_nce_bound"], 6) for s in settings for r in s["runs"]}:
            ax.axvline(bound, color="lightgrey", linestyle=":", linewidth=1)
        ax.set_xlabel("I_NCE on held-out views (nats; dotted: log N, the most it can show)")
        ax.set_title("Readout against the information the views share (InfoMin Fig. 5)")
    else:
        ax.set_xlabel("I_ER = H - Rec on held-out views (nats; vMF kernel)")
        ax.set_title("The same against the entropy-reconstruction bound (ER, 2023)")
    ax.legend(fontsize=8, loc="best")

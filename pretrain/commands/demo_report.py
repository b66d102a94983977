"""The demo's report (tools/demo.py): the headline table with its paired-test verdicts
(demo_stats.py), the pretraining curves, the fresh-key note, OUTPUT/report.md and
OUTPUT/results.json."""

from __future__ import annotations

import json
import os

# InfoMin Table 4's conditions: what the two views of an instance share (factor_views.FACTORS),
# in plain words for the report. "infomin-aug" is the usual kind of views, two InfoMin
# augmentations (crops, colour jitter, blur, RandAugment, grayscale) of one scene composite.
VIEWS = {
    "object": "the object only (its colour, size, place and photo are drawn anew for each view)",
    "background": "the background photo only (a new object, colour, size and place each)",
    "colour": "the object's colour only (a new object, size, place and photo each)",
    "position": "the object's place only (a new object, colour, size and photo each)",
    "infomin-aug": "one composite, augmented twice with InfoMin Aug: the photo, the objects and "
    "(mostly) their colours",
}


def learned_note(probe: dict) -> str:
    """The fresh-key probe of the pretrained model (pretrain/evaluation/fresh_key_probe.py's
    result, tools/fresh_keys.py), as a report section: whether pretraining has learned to tell
    instances apart. The verdict reads the last checkpoint's scores as the table below it shows
    them (4 decimals), so the two agree."""
    from pretrain.evaluation.fresh_key_probe import table

    if not probe["rows"]:
        return ""
    last = {
        column: round(value, 4)
        for column, value in probe["rows"][-1].items()
        if column != "checkpoint"
    }
    queue_acc, fresh_acc, cosine = last["queue_acc"], last["fresh_acc"], last["query_cosine"]
    chance = round(probe["chance_fresh_acc"], 4)
    if fresh_acc < 2 * chance:
        verdict = (
            f"Not yet. Against fresh keys of the other probe instances the positive is "
            f"found for {fresh_acc:.1%} of them (chance {chance:.1%}), and the queries of "
            f"different instances have a mean cosine of {cosine:.3f} (1: one point for "
            f"all)."
        )
        if queue_acc >= max(0.1, 2 * fresh_acc):
            verdict += (
                f" Against the stored queue it is found for {queue_acc:.0%}, as in the "
                f"training log: queue entries written by older key encoders are told "
                f"apart by their age, not their content."
            )
    else:
        verdict = (
            f"Yes: against fresh keys of the other probe instances the positive is found "
            f"for {fresh_acc:.1%} of them (chance {chance:.1%})."
        )
    return (
        f"## Has pretraining learned to tell instances apart?\n\n{verdict}\n\n"
        f"```\n$ python tools/fresh_keys.py ...\n{table(probe)}\n```\n"
    )


def plot_pretraining(pretrain_dirs: dict, path: str) -> None:
    """Loss and I_NCE of every pretraining, one line per condition."""
    import matplotlib

    from pretrain.engine.progress import read_metrics

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    for label, folder in pretrain_dirs.items():
        rows = [r for r in read_metrics(folder) if "loss" in r]
        its = [r["iteration"] for r in rows]
        left.plot(its, [r["loss"] for r in rows], label=label)
        right.plot(its, [r["I_NCE"] for r in rows], label=label)
    left.set_title("InfoNCE loss")
    right.set_title("I_NCE = log(K+1) - loss (nats)")
    for ax in (left, right):
        ax.set_xlabel("iteration")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def fmt(mean: float, spread: float | None) -> str:
    return f"{mean:.1f}" + (f" ± {spread:.1f}" if spread is not None else "")


def knn_cell(by_seed: dict) -> str:
    """kNN top-1: mean ± SD over pretraining seeds, or ± the binomial s.e. of a single one."""
    values = [r["top1"] for r in by_seed.values()]
    if len(values) == 1:
        return f"{values[0]:.1f} ± {next(iter(by_seed.values()))['stderr']:.1f} (s.e.)%"
    from detection.compare import mean_std

    return fmt(*mean_std(values)) + f"% ({len(values)} seeds)"


def summary(
    table: dict, knn: dict, labels: list[str], baseline: str, runs: list[dict], gt_json: str
) -> tuple[str, list[str], dict]:
    """The headline table (kNN top-1; box and mask AP mean ± std over fine-tunes) and one verdict
    per pretrained backbone and metric, each from a paired test against `baseline`
    (pretrain/commands/demo_stats.py); returns the tests too."""
    from detection.compare import RUN_COUNT, mean_std

    from pretrain.commands.demo_stats import verdict_lines

    rows = []
    by_task = {task: by_label for (_dataset, task), by_label in table.items()}
    for label in labels:
        cells = [knn_cell(knn[label]) if label in knn else "n/a"]
        seeds = 0
        for task in ("bbox", "segm"):
            values = by_task.get(task, {}).get(label, {})
            cells.append(fmt(*mean_std(values["AP"])) if values.get("AP") else "n/a")
            seeds = max(seeds, len(values.get(RUN_COUNT, [])))
        rows.append(f"| {label} | {seeds} | " + " | ".join(cells) + " |")
    verdicts, tests = verdict_lines(knn, runs, labels, baseline, gt_json)
    head = (
        "| backbone | fine-tunes | kNN top-1 | box AP (mean ± std) "
        "| mask AP (mean ± std) |\n|---|---|---|---|---|\n"
    )
    return head + "\n".join(rows) + "\n", verdicts, tests


def write_results(
    path: str,
    knn: dict,
    table: dict,
    probe: dict,
    supervised_top1: float | None,
    verified: dict,
    minutes: dict,
    tests: dict,
) -> None:
    """Every figure of the report as JSON, for scripts and tests: kNN top-1, its standard error
    and its per-image predictions per backbone and pretraining seed; each fine-tune's metrics per
    dataset / task and backbone, one value per seed; the paired tests against random init per
    backbone and metric; the fresh-key probe; the supervised baseline's top-1; the backbone
    tensors Detectron2 was checked to load, per exported backbone; the minutes per stage."""
    from detection.compare import RUN_COUNT
    from pretrain.evaluation.fresh_key_probe import as_json

    results = {
        "knn": {
            label: {str(seed): result for seed, result in by_seed.items()}
            for label, by_seed in knn.items()
        },
        "tests": tests,
        "detection": {
            f"{dataset}/{task}": {
                label: {metric: values for metric, values in metrics.items() if metric != RUN_COUNT}
                for label, metrics in by_label.items()
            }
            for (dataset, task), by_label in table.items()
        },
        "fresh_keys": as_json(probe),
        "supervised_top1": supervised_top1,
        "verified_tensors": verified,
        "minutes": minutes,
    }
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")


# Why each stage is the size it is (the report's "Choices" section); figures in
# docs/results/demo_2026-12.md.
CHOICES = """\
- Backbone: ResNet-18, the detection config's trunk; narrower or smaller trunks would need a
  detection backbone of their own and save little, as the fine-tunes cost the most.
- Pretraining images: 64 px renderings with 32-56 px objects, the size the objects have in the
  128 px detection images, so the features the fine-tune starts from are at the right scale.
- Pretraining: {iters} steps of {batch} instances, the batch's other keys as negatives (no queue:
  in a short run queued keys written by older key encoders are told from the positive by their
  age), key-encoder momentum {momentum}, only a flip on top of the renderings (the views already
  differ in everything they must not share).
- Fine-tuning: {finetune} iterations for every backbone alike, with the learning-rate drop at
  80%: the gain shows after the drop, not before. On a 2-core CPU 400 is the longest schedule
  the 15-minute budget allows; 600 give both initialisations higher AP
  (docs/results/demo_2026-12.md). The detector's FPN has 64 channels and the RPN keeps 256
  proposals per training image (1-3 objects in 128 px): 22% cheaper steps.
  Fine-tunes run {jobs} at a time, one thread each on a 2-core CPU.
- Precision: bf16 (SOLVER.CPU_AMP) where the CPU computes it natively (AMX / AVX512-BF16),
  about 1.3x faster for pretraining and 1.2x for fine-tuning; fp32 elsewhere.
"""


def write_report(
    args,
    cfg,
    output: str,
    data_note: str,
    headline: str,
    verdicts: list[str],
    details: str,
    learned: str,
    minutes: dict,
    labelled_test: str,
) -> str:
    shares = "\n".join(
        f"- views share: {c}: {VIEWS[c]}"
        for c in args.conditions
        if c in VIEWS and not args.pretrain_images
    )
    timing = ", ".join(f"{stage} {value:.1f}" for stage, value in minutes.items())
    finetune = args.finetune_iters or "the config's"
    knn_note = (
        f"kNN (k = 200) on the backbone's pooled features, neighbours from labelled "
        f"objects, scored on held-out ones (`{labelled_test}`); labels are used only "
        f"here and in fine-tuning, never in pretraining."
        if labelled_test
        else ""
    )
    choices = CHOICES.format(
        iters=args.pretrain_iters,
        batch=cfg.SOLVER.BATCH_SIZE,
        momentum=cfg.MODEL.MOMENTUM,
        jobs=args.jobs,
        finetune=args.finetune_iters or "the detection config's",
    )
    path = os.path.join(output, "report.md")
    with open(path, "w") as f:
        f.write(
            f"# Demo: contrastive pretraining with chosen views -> Detectron2 fine-tuning\n\n"
            f"Data: {data_note}. Pretraining: `{args.pretrain_config}`, {args.pretrain_iters} "
            f"iterations. Fine-tuning: `{args.detection_config}`, {finetune} iterations from "
            f"each initialisation with seeds 1-{args.seeds} (head initialisation, data order), "
            f"evaluated on the held-out set. Minutes: {timing}.\n\n"
            f"## What the two views share\n\n{shares or 'Two augmentations of one image.'}\n\n"
            f"What the views share is what contrastive learning can learn (InfoMin, Sec. 3 and "
            f"Table 4). On these images the usual views (crops of one composite) share the photo "
            f"behind the object and its colour, which tell the images apart fastest, so that is "
            f"what they teach; views that share only the object teach the object.\n\n"
            f"## Result\n\n{headline}\n{knn_note}\n\n" + "\n".join(verdicts) + "\n\n"
            f"## Choices\n\n{choices}\n"
            f"![AP](ap.png)\n\n![pretraining](pretraining.png)\n\n{learned}\n"
            f"## Every metric\n\n{details}\n"
        )
    return path

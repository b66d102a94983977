"""tools/sweep.py: a grid of pretraining runs, each measured by I_NCE on held-out views and a
readout, on real CIFAR-10 images at 16 px with a few iterations each."""

import contextlib
import io
import json
import math
import os
import signal
import subprocess
import sys
import time

import matplotlib.image
import pytest
import torch

from pretrain.commands.sweep import main as sweep
from pretrain.common.errors import ConfigError
from pretrain.config import load_cfg
from pretrain.evaluation.mutual_info import heldout_views, info_nce_estimate
from pretrain.models.moco import build_moco
from pretrain.sweep import Sweep, SweepError, SweepPoint, grid_points, run_point
from tests.pretrain.reference_er import release_entropy, release_reconstruction
from tests.conftest import REPO

BATCH = 8
HELDOUT_N = 32
GRID = ["--grid", "DATA.CROP_SCALE", "(0.08,1.0)", "(0.6,1.0)"]
NAMES = ["CROP_SCALE=0.08-1.0", "CROP_SCALE=0.6-1.0"]


def tiny_overrides(cifar10) -> list[str]:
    """Pretrain on CIFAR-10's test images; kNN from a few train images onto a few test images."""
    return [
        "MODEL.HEAD_HIDDEN_DIM",
        "64",
        "MODEL.QUEUE_SIZE",
        "32",
        "DATA.CROP_SIZE",
        "16",
        "DATA.NUM_WORKERS",
        "0",
        "SOLVER.BATCH_SIZE",
        str(BATCH),
        "SOLVER.MAX_ITER",
        "2",
        "SOLVER.CHECKPOINT_PERIOD",
        "1",
        "LOG_PERIOD",
        "1",
        "DATA.ROOT",
        str(cifar10 / "test"),
        "EVAL.KNN_TRAIN_ROOT",
        str(cifar10 / "train"),
        "EVAL.KNN_TRAIN_LIMIT",
        "100",
        "EVAL.KNN_TEST_ROOT",
        str(cifar10 / "test"),
        "EVAL.KNN_TEST_LIMIT",
        "50",
        "EVAL.KNN_K",
        "20",
    ]


CONFIG = str(REPO / "configs" / "pretrain" / "demo_R18_mocov2.yaml")


def sweep_args(cifar10, output) -> list[str]:
    """Held-out images for I_NCE: CIFAR-10's train folder, which pretraining never reads."""
    return [
        "--config-file",
        CONFIG,
        "--output",
        str(output),
        "--heldout",
        str(cifar10 / "train"),
        "--heldout-n",
        str(HELDOUT_N),
        "--set",
        *tiny_overrides(cifar10),
        *GRID,
    ]


def reference_i_nce(queries: torch.Tensor, keys: torch.Tensor, temperature: float) -> float:
    """log N - InfoNCE with each query's own key as the positive and the other N - 1 keys as the
    negatives, written out in float64."""
    q, k = queries.double(), keys.double()
    logits = q @ k.t() / temperature
    loss = (torch.logsumexp(logits, dim=1) - logits.diagonal()).mean().item()
    return math.log(len(q)) - loss


def encode(model, images: torch.Tensor, encoder, train_bn: bool = False) -> torch.Tensor:
    """Embeddings one training batch at a time, batch norm in eval mode (the measurement's
    default) or, with `train_bn`, in train mode."""
    model.train(train_bn)
    with torch.no_grad():
        return torch.cat([encoder(images[i : i + BATCH]) for i in range(0, len(images), BATCH)])


# -- the estimator -----------------------------------------------------------------------------


def tiny_moco(*opts):
    cfg = load_cfg(
        opts=[
            "MODEL.ARCH",
            "resnet18",
            "MODEL.QUEUE_SIZE",
            "32",
            "MODEL.FEAT_DIM",
            "16",
            "MODEL.HEAD_HIDDEN_DIM",
            "32",
            "SOLVER.BATCH_SIZE",
            str(BATCH),
            "MODEL.SHUFFLE_BN",
            "False",
            *opts,
        ]
    )
    torch.manual_seed(0)
    return build_moco(cfg)


def noise_images(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_identical_views_reach_the_log_n_bound_and_unrelated_ones_carry_nothing():
    n = 8 * BATCH
    model = tiny_moco("MODEL.TEMPERATURE", "0.001")  # the key encoder starts as a copy
    x = noise_images(n, 1)
    # Batch statistics (bn="train"): an untrained network's BN running statistics are the
    # initial 0 / 1, which leave noise images' embeddings nearly alike in eval mode.
    same = info_nce_estimate(model, x, x, BATCH, bn="train")
    assert same["bound"] == pytest.approx(math.log(n))
    assert same["i_nce"] == pytest.approx(math.log(n), abs=0.01)  # loss ~ 0: all it can show
    assert same["acc"] == 1.0
    # Keys of other images: the positive tells nothing about its query. A lower bound on zero
    # information shows none (negative by about half the logits' variance) ...
    unrelated = info_nce_estimate(
        tiny_moco("MODEL.TEMPERATURE", "0.2"), x, noise_images(n, 2), BATCH, bn="train"
    )
    assert -1.0 < unrelated["i_nce"] < 0.0
    # ... and ~ 0 where the logits hardly spread.
    flat = info_nce_estimate(
        tiny_moco("MODEL.TEMPERATURE", "5.0"), x, noise_images(n, 2), BATCH, bn="train"
    )
    assert abs(flat["i_nce"]) < 0.01


def test_the_estimate_equals_an_independent_float64_computation():
    model = tiny_moco("MODEL.TEMPERATURE", "0.2")
    # Related views (the same noise, plus noise): a value between 0 and log N.
    queries_in = noise_images(4 * BATCH, 3)
    keys_in = queries_in + 0.1 * noise_images(4 * BATCH, 4)
    expected = reference_i_nce(
        encode(model, queries_in, model.query_encoder),
        encode(model, keys_in, model.key_encoder),
        0.2,
    )
    measured = info_nce_estimate(model, queries_in, keys_in, BATCH)
    assert 0.05 < expected < math.log(4 * BATCH)
    assert measured["i_nce"] == pytest.approx(expected, abs=1e-5)  # the model runs in float32
    # I_ER on the same pairs, as the ER release's estimators compute it (tests/pretrain/
    # reference_er.py): H of the keys, Rec of each key from its query.
    queries = encode(model, queries_in, model.query_encoder).double()
    keys = encode(model, keys_in, model.key_encoder).double()
    h = release_entropy(keys, "sphere", with_eps=False).item()
    rec = release_reconstruction(queries, keys, "sphere", with_eps=False).item()
    assert measured["er_entropy"] == pytest.approx(h, abs=1e-4)
    assert measured["i_er"] == pytest.approx(h - rec, abs=1e-4)
    # bn="train": each batch's own statistics, as the training step encodes.
    model = tiny_moco("MODEL.TEMPERATURE", "0.2")
    expected = reference_i_nce(
        encode(model, queries_in, model.query_encoder, train_bn=True),
        encode(model, keys_in, model.key_encoder, train_bn=True),
        0.2,
    )
    measured = info_nce_estimate(model, queries_in, keys_in, BATCH, bn="train")["i_nce"]
    assert measured == pytest.approx(expected, abs=1e-5)


def test_the_estimate_does_not_change_when_the_held_out_images_are_reordered():
    """With batch norm in eval mode (the default) every embedding depends on its own image only,
    so the same pairs in any order, grouped into any batches, give the same I_NCE. In train mode
    the batches' statistics depend on the grouping: images sorted by content (as class folders
    are) shift the estimate; the reason eval mode is the default."""
    model = tiny_moco("MODEL.TEMPERATURE", "0.2")
    n = 6 * BATCH
    queries_in = noise_images(n, 5)
    queries_in[: n // 2] += 1.5  # two kinds of image, sorted: each batch holds one kind
    keys_in = queries_in + 0.3 * noise_images(n, 6)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(7))
    as_given = info_nce_estimate(model, queries_in, keys_in, BATCH)
    reordered = info_nce_estimate(model, queries_in[order], keys_in[order], BATCH)
    assert as_given["bn"] == "eval"
    assert reordered["i_nce"] == pytest.approx(as_given["i_nce"], abs=1e-5)
    assert reordered["acc"] == as_given["acc"]
    sorted_train = info_nce_estimate(model, queries_in, keys_in, BATCH, bn="train")["i_nce"]
    shuffled_train = info_nce_estimate(model, queries_in[order], keys_in[order], BATCH, bn="train")[
        "i_nce"
    ]
    assert abs(sorted_train - shuffled_train) > 1e-3


# -- the grid ----------------------------------------------------------------------------------


def test_grid_points_are_the_cartesian_product_named_by_their_setting():
    points = grid_points(
        [("DATA.CROP_SCALE", ["(0.08,1.0)", "(0.2,1.0)"]), ("MODEL.TEMPERATURE", ["0.1", "0.2"])]
    )
    assert [p.name for p in points] == [
        "CROP_SCALE=0.08-1.0__TEMPERATURE=0.1",
        "CROP_SCALE=0.08-1.0__TEMPERATURE=0.2",
        "CROP_SCALE=0.2-1.0__TEMPERATURE=0.1",
        "CROP_SCALE=0.2-1.0__TEMPERATURE=0.2",
    ]
    assert points[1].overrides == ["DATA.CROP_SCALE", "(0.08,1.0)", "MODEL.TEMPERATURE", "0.2"]
    assert points[1].label == "CROP_SCALE (0.08,1.0), TEMPERATURE 0.2"
    # Keys that end alike keep their full name; values that would share a folder are refused.
    assert (
        grid_points([("MODEL.JIGSAW.ENABLED", ["True"]), ("X.ENABLED", ["1"])])[0].name
        == "MODEL.JIGSAW.ENABLED=True__X.ENABLED=1"
    )
    with pytest.raises(SweepError, match="one folder name"):
        grid_points([("DATA.CROP_SCALE", ["(0.2,1.0)", "(0.2, 1.0)"])])
    assert [p.name for p in grid_points([])] == ["base"]


def test_a_grid_key_that_does_not_exist_fails_before_anything_runs(cifar10, tmp_path):
    with pytest.raises(ConfigError, match="NO_SUCH_KEY"):
        sweep([*sweep_args(cifar10, tmp_path / "sweep"), "--grid", "MODEL.NO_SUCH_KEY", "1"])
    assert not (tmp_path / "sweep").exists()


# -- a whole sweep -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_sweep(cifar10, tmp_path_factory):
    output = tmp_path_factory.mktemp("sweep") / "out"
    capture = io.StringIO()
    with contextlib.redirect_stdout(capture):
        assert sweep(sweep_args(cifar10, output)) == 0
    return output, capture.getvalue()


def test_a_grid_runs_locally_and_writes_results_table_and_plot(finished_sweep):
    output, stdout = finished_sweep
    rows = json.loads((output / "results.json").read_text())["rows"]
    assert [r["name"] for r in rows] == ["random_init", *NAMES]
    for row in rows:
        point = json.loads((output / row["name"] / "result.json").read_text())
        assert point["accuracy"] == row["accuracy"] and 0 <= point["accuracy"] <= 100
        assert point["i_nce_bound"] == pytest.approx(math.log(HELDOUT_N))
        assert point["i_nce"] <= point["i_nce_bound"]
        assert point["seconds"] > 0
    baseline, trained = rows[0], rows[1:]
    assert baseline["iterations"] == 0 and baseline["train_loss"] is None
    for row in trained:
        assert row["iterations"] == 2 and row["train_loss"] > 0
    settings = json.loads((output / "results.json").read_text())["summary"]["settings"]
    for setting in settings[1:]:  # the mark is the paired test's, never a bare comparison
        test = setting["vs_random_init"]
        assert setting["mark"] == (
            "n.s." if test["p"] >= 0.05 else "above" if test["difference"] > 0 else "below"
        )
    cfg = load_cfg(str(output / NAMES[1] / "config.yaml"))  # the point trained its own setting
    assert tuple(cfg.DATA.CROP_SCALE) == (0.6, 1.0) and cfg.OUTPUT_DIR == str(output / NAMES[1])
    table = (output / "results.md").read_text()
    assert "| random init |" in table and "| CROP_SCALE (0.6,1.0) |" in table
    assert "I_ER (nats, mean ± SD)" in table
    assert len((output / "results.csv").read_text().splitlines()) == 1 + 3
    assert "Spearman's rho" in table
    image = matplotlib.image.imread(str(output / "reverse_u.png"))
    assert image.ndim == 3 and image.shape[0] > 300 and image.std() > 0
    assert table in stdout


def test_a_points_i_nce_is_measured_on_held_out_views_at_the_end(finished_sweep, cifar10):
    """Recomputed from the final checkpoint and the held-out images, independently of the
    sweep's code path; and not the training log's I_NCE (against the queue)."""
    output, _ = finished_sweep
    point_dir = output / NAMES[0]
    result = json.loads((point_dir / "result.json").read_text())
    cfg = load_cfg(str(point_dir / "config.yaml"))
    torch.manual_seed(cfg.SEED)
    model = build_moco(cfg)
    model.load_state_dict(torch.load(point_dir / "model_final.pth", weights_only=False)["model"])
    queries_in, keys_in = heldout_views(cfg, str(cifar10 / "train"), HELDOUT_N)
    assert len(queries_in) == result["heldout_images"] == HELDOUT_N
    assert result["heldout_bn"] == "eval"
    queries = encode(model, queries_in, model.query_encoder)
    keys = encode(model, keys_in, model.key_encoder)
    expected = reference_i_nce(queries, keys, cfg.MODEL.TEMPERATURE)
    assert result["i_nce"] == pytest.approx(expected, abs=1e-5)
    i_er = release_entropy(keys.double(), "sphere", with_eps=False) - release_reconstruction(
        queries.double(), keys.double(), "sphere", with_eps=False
    )
    assert result["i_er"] == pytest.approx(i_er.item(), abs=1e-4)
    logged = [json.loads(line) for line in (point_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(abs(row["I_NCE"] - result["i_nce"]) > 1e-3 for row in logged if "I_NCE" in row)


def test_heldout_views_are_a_seeded_random_sample_in_random_order(cifar10):
    """In class folders the first N images are all of one class, and N in folder order put one
    or two classes in each batch; the measurement takes N at random, in random order, the same N
    images for every point of a sweep (order_seed is the measurement's; the views are the run's)."""
    cfg = load_cfg(CONFIG, tiny_overrides(cifar10))
    queries, keys = heldout_views(cfg, str(cifar10 / "train"), 21)
    assert queries.shape == keys.shape == (16, 3, 16, 16)  # whole batches of 8
    assert not torch.equal(queries, keys)
    again, _ = heldout_views(cfg, str(cifar10 / "train"), 21)
    assert torch.equal(again, queries)  # a measurement repeats exactly
    other, _ = heldout_views(cfg, str(cifar10 / "train"), 21, order_seed=1)
    assert not torch.equal(other, queries)
    from pretrain.data.packed import open_images

    images = open_images(str(cifar10 / "train"))
    chosen = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:16]
    first_batch = {os.path.basename(os.path.dirname(images.name(i))) for i in chosen[:8].tolist()}
    assert len(first_batch) >= 4  # a mix of classes in every batch norm batch


@pytest.mark.integration
def test_a_killed_sweep_reruns_only_the_missing_points(cifar10, tmp_path, capsys):
    output = tmp_path / "out"
    first = output / NAMES[0] / "result.json"
    proc = subprocess.Popen(
        [sys.executable, "tools/sweep.py", *sweep_args(cifar10, output)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 900  # a bound only: seconds unloaded, minutes on a busy machine
        while not first.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert first.exists(), "the first grid point never finished"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (output / NAMES[1] / "result.json").exists()
    before = first.read_bytes(), first.stat().st_mtime_ns
    log_before = (output / NAMES[0] / "metrics.jsonl").read_bytes()

    # What is left, as the SLURM array would submit it.
    capsys.readouterr()
    sweep([*sweep_args(cifar10, output), "--slurm", "--dry-run"])
    plan = capsys.readouterr().out
    assert "#SBATCH --array=0-0%1" in plan and f"task 0: {NAMES[1]}" in plan

    sweep(sweep_args(cifar10, output))
    stdout = capsys.readouterr().out
    assert f"{NAMES[0]}: done" in stdout and "random_init: done" in stdout
    assert (first.read_bytes(), first.stat().st_mtime_ns) == before  # not measured again
    assert (output / NAMES[0] / "metrics.jsonl").read_bytes() == log_before  # nor retrained
    assert json.loads((output / NAMES[1] / "result.json").read_text())["iterations"] == 2
    rows = json.loads((output / "results.json").read_text())["rows"]
    assert [r["name"] for r in rows] == ["random_init", *NAMES]


def test_seeds_run_every_point_and_random_init_per_seed_and_pair_them(cifar10, tmp_path):
    """--seeds: each point and the baseline once per SEED, in <setting>/seed<S>/; the report
    pairs each point's per-image kNN predictions with random init's of the same seeds."""
    output = tmp_path / "out"
    capture = io.StringIO()
    with contextlib.redirect_stdout(capture):
        assert sweep([*sweep_args(cifar10, output)[:-1], "--seeds", "0", "1"]) == 0
    for folder in (
        "random_init/seed0",
        "random_init/seed1",
        f"{NAMES[0]}/seed0",
        f"{NAMES[0]}/seed1",
    ):
        result = json.loads((output / folder / "result.json").read_text())
        assert result["seed"] == int(folder[-1])
        assert len(result["predictions"]) == len(result["labels"]) == 50
    cfg = load_cfg(str(output / NAMES[0] / "seed1" / "config.yaml"))
    assert cfg.SEED == 1
    inits = [json.loads((output / f"random_init/seed{s}/result.json").read_text()) for s in (0, 1)]
    assert inits[0]["labels"] == inits[1]["labels"]  # the same test images: pairable
    summary = json.loads((output / "results.json").read_text())["summary"]
    setting = summary["settings"][1]
    assert setting["seeds"] == [0, 1] and setting["vs_random_init"]["seeds"] == 2
    runs = [
        json.loads((output / NAMES[0] / f"seed{s}" / "result.json").read_text()) for s in (0, 1)
    ]
    expected = sum(r["accuracy"] - i["accuracy"] for r, i in zip(runs, inits)) / 2
    # The report pairs per-image predictions (exact); result.json's accuracies carry float32
    # rounding (a 3.7e-7 difference where two runs scored the same), hence the absolute tolerance.
    assert setting["vs_random_init"]["difference"] == pytest.approx(expected, abs=1e-4)
    assert setting["accuracy"][1] is not None  # an SD over two seeds


def test_slurm_dry_run_prints_one_array_of_every_point(cifar10, tmp_path, capsys):
    output = tmp_path / "out"
    sweep(
        [
            *sweep_args(cifar10, output),
            "--grid",
            "MODEL.TEMPERATURE",
            "0.1",
            "0.2",
            "--slurm",
            "--gpus-per-node",
            "1",
            "--partition",
            "gpu",
            "--array-parallelism",
            "2",
            "--dry-run",
        ]
    )
    plan = capsys.readouterr().out
    for line in (
        "#SBATCH --array=0-4%2",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --partition=gpu",
        "#SBATCH --signal=USR2@120",
        "submitit.core._submit",
        "task 0: random_init",
        "task 4: CROP_SCALE=0.6-1.0__TEMPERATURE=0.2",
    ):
        assert line in plan
    assert not output.exists()  # nothing submitted, nothing written


def test_a_linear_readout_runs_in_the_points_folder(cifar10, tmp_path):
    """--readout linear: tools/lincls.py's readout, on the point's checkpoint (here random init's,
    no checkpoint), configured by --linear-set."""
    linear = Sweep(
        CONFIG,
        tiny_overrides(cifar10),
        [],
        str(tmp_path),
        str(cifar10 / "train"),
        HELDOUT_N,
        "linear",
        [
            "SOLVER.EPOCHS",
            "1",
            "SOLVER.BATCH_SIZE",
            "32",
            "DATA.LIMIT",
            "64",
            "DATA.VAL_LIMIT",
            "32",
            "DATA.NUM_WORKERS",
            "0",
        ],
    )
    result = run_point(linear, SweepPoint("random_init", (), random_init=True))
    logged = json.loads((tmp_path / "random_init" / "lincls" / "metrics.jsonl").read_text())
    assert result["readout"] == "linear" and result["accuracy"] == logged["val_top1"]
    assert logged["epoch"] == 1


def cmc_overrides(cifar10) -> list[str]:
    return [*tiny_overrides(cifar10), "MODEL.CMC.ENABLED", "True", "DATA.COLOR_SPACE", "rgb"]


def test_a_cmc_point_reads_both_view_encoders_out_and_measures_i_nce_across_the_views(
    cifar10, tmp_path
):
    """A colour-space sweep (InfoMin Fig. 4): the kNN readout concatenates the two view encoders'
    features of the converted image, and I_NCE is between the two channel groups, each way."""
    from pretrain.models.cmc import CMCReadoutBackbone
    from pretrain.models.registry import build_model

    cmc = Sweep(
        CONFIG,
        cmc_overrides(cifar10),
        [("DATA.COLOR_SPACE", ["lab"])],
        str(tmp_path),
        str(cifar10 / "train"),
        HELDOUT_N,
    )
    cmc.check()
    point = grid_points(cmc.axes)[0]
    result = run_point(cmc, point)
    assert result["iterations"] == 2 and 0 <= result["accuracy"] <= 100
    assert result["i_nce_bound"] == pytest.approx(math.log(HELDOUT_N))
    assert result["i_nce"] <= result["i_nce_bound"]

    cfg = cmc.point_cfg(point)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    backbone = model.readout_backbone(cfg)
    assert isinstance(backbone, CMCReadoutBackbone) and backbone.split == (1, 2)
    images = noise_images(2, seed=3)
    from pretrain.data.color_spaces import denormalize, normalize, to_space
    from pretrain.data.views import IMAGENET_MEAN, IMAGENET_STD

    lab = normalize(
        to_space(denormalize(images, IMAGENET_MEAN, IMAGENET_STD).clamp(0, 1), "lab"), "lab"
    )
    with torch.no_grad():
        expected = torch.cat(
            [
                model.view1.query_encoder.backbone(lab[:, :1]),
                model.view2.query_encoder.backbone(lab[:, 1:]),
            ],
            dim=1,
        )
        torch.testing.assert_close(backbone(images), expected)


def test_a_cmc_sweep_refuses_the_linear_readout_before_running(cifar10, tmp_path):
    linear = Sweep(
        CONFIG,
        cmc_overrides(cifar10),
        [],
        str(tmp_path),
        str(cifar10 / "train"),
        HELDOUT_N,
        "linear",
    )
    with pytest.raises(SweepError, match="CMC"):
        linear.check()

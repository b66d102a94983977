"""DATA.PIPELINE gpu: per-sample parameter distributions against the CPU pipeline's own samplers
(torchvision's get_params, timm's RandAugment recorded while it runs), the whole pipeline's views
(shapes, dtypes, ranges, reproducibility, independence from the batch), agreement of its pixel
statistics with the CPU pipeline's, packs, and a training run through tools/pretrain.py."""

import glob
import random

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from pretrain.common.errors import DatasetError
from pretrain.config import load_cfg
from pretrain.data.gpu import randomness
from pretrain.data.gpu.pipeline import BatchedViews
from pretrain.data.images import EncodedImages, ImageViews, collate_encoded, collate_views
from pretrain.data.packed import FolderImages, PackedImages, build_pack, open_images
from pretrain.data.views import build_views
from tests.conftest import run_tool

INFOMIN = "configs/pretrain/infomin_R50_200ep.yaml"
N = 6000


def ks_statistic(a, b) -> float:
    """Two-sample Kolmogorov-Smirnov distance (no scipy here)."""
    a, b = (
        torch.as_tensor(a, dtype=torch.float64).sort().values,
        torch.as_tensor(b, dtype=torch.float64).sort().values,
    )
    points = torch.cat([a, b])
    cdf_a = torch.searchsorted(a, points, right=True) / len(a)
    cdf_b = torch.searchsorted(b, points, right=True) / len(b)
    return float((cdf_a - cdf_b).abs().max())


# KS critical distance for two samples of N at alpha = 0.001: 1.95 * sqrt(2 / N) ~ 0.036
KS_LIMIT = 1.95 * (2 / N) ** 0.5


def draws(n=N, seed_offset=0):
    return randomness.Draws(
        randomness.sample_uniforms(range(seed_offset, seed_offset + n), 1)[:, 0]
    )


def close(frequency, p, n=N):
    return abs(frequency - p) < 4 * (p * (1 - p) / n) ** 0.5


@pytest.mark.parametrize("height, width", [(480, 640), (1000, 90)])
def test_resized_crop_boxes_follow_torchvision(height, width):
    ours = randomness.resized_crop_boxes(
        draws(), torch.full((N,), height), torch.full((N,), width), (0.2, 1.0)
    )
    torch.manual_seed(0)
    ref = torch.tensor(
        [
            T.RandomResizedCrop.get_params(
                torch.empty(1, height, width), [0.2, 1.0], [3 / 4, 4 / 3]
            )
            for _ in range(N)
        ]
    )
    for column in range(4):  # top, left, height, width
        assert ks_statistic(ours[:, column], ref[:, column]) < KS_LIMIT
    assert (ours[:, 0] + ours[:, 2] <= height).all() and (ours[:, 1] + ours[:, 3] <= width).all()


def test_color_jitter_parameters_follow_torchvision():
    params = randomness.color_jitter_params(draws(), 0.8, 0.8, 0.8, 0.2, p=0.8)
    torch.manual_seed(0)
    jitter = T.ColorJitter(0.8, 0.8, 0.8, 0.2)
    ref = [
        jitter.get_params(jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue)
        for _ in range(N)
    ]
    for i, key in enumerate(("brightness", "contrast", "saturation", "hue"), start=1):
        assert ks_statistic(params[key], [r[i] for r in ref]) < KS_LIMIT
    assert close(params["apply"].float().mean(), 0.8)
    for position in range(4):
        for op in range(4):  # each adjustment equally likely at each position
            assert close((params["order"][:, position] == op).float().mean(), 0.25)


STRENGTHS = [
    "DATA.CROP_SIZE",
    "64",
    "DATA.VIEWS.STEPS",
    "('flip', 'jitter', 'blur', 'grayscale')",
    "DATA.VIEWS.FLIP_P",
    "0.7",
    "DATA.VIEWS.JITTER_STRENGTH",
    "0.3",
    "DATA.VIEWS.JITTER_P",
    "0.6",
    "DATA.VIEWS.GRAYSCALE_P",
    "0.35",
    "DATA.VIEWS.BLUR_SIGMA",
    "(0.5, 3.0)",
    "DATA.VIEWS.BLUR_P",
    "0.3",
]


def test_configured_strengths_give_the_same_parameter_distributions_on_both_pipelines():
    """Every DATA.VIEWS strength but RandAugment's (next test): the GPU pipeline's samplers with
    its recipe against the transforms the CPU pipeline builds from the same config (their
    get_params, their probabilities)."""
    cfg = load_cfg(INFOMIN, STRENGTHS)
    recipe = BatchedViews(cfg, "cpu").view
    flip, jitter, blur, gray = build_views(cfg).augmentation.transforms[1:5]
    (cj,), (gaussian,) = jitter.transforms, blur.transforms
    torch.manual_seed(0)
    ref = [cj.get_params(cj.brightness, cj.contrast, cj.saturation, cj.hue) for _ in range(N)]
    params = randomness.color_jitter_params(draws(), *recipe.jitter, recipe.jitter_p)
    for i, key in enumerate(("brightness", "contrast", "saturation", "hue"), start=1):
        assert ks_statistic(params[key], [r[i] for r in ref]) < KS_LIMIT, key
    assert np.allclose([r[4] for r in ref], 0.0, atol=0.06 + 1e-9)  # hue 0.2 x 0.3
    ref_sigma = [T.GaussianBlur.get_params(*gaussian.sigma) for _ in range(N)]
    blur_params = randomness.blur_params(draws(), recipe.blur_p, recipe.blur_sigma_pixels)
    assert ks_statistic(blur_params["sigma"], ref_sigma) < KS_LIMIT
    assert max(ref_sigma) <= 3.0 * 64 / 224 and min(ref_sigma) >= 0.5 * 64 / 224
    assert recipe.blur_kernel == gaussian.kernel_size[0] == 7
    for frequency, transform in (
        (params["apply"], jitter),
        (blur_params["apply"], blur),
        (draws().take() < recipe.flip_p, flip),
        (draws().take() < recipe.grayscale_p, gray),
    ):
        assert close(frequency.double().mean(), transform.p), type(transform).__name__
    assert (flip.p, jitter.p, blur.p, gray.p) == (0.7, 0.6, 0.3, 0.35)


def record_timm_rand_augment(n, cfg):
    """(op name, argument, bicubic) of every op timm's RandAugment really applies, n images."""
    (rand_augment,) = [
        t for t in build_views(cfg).augmentation.transforms if type(t).__name__ == "RandAugment"
    ]
    calls = []
    for op in rand_augment.ops:

        def recorder(img, *args, _name=op.name, **kwargs):
            resample = kwargs.get("resample")
            if isinstance(resample, (tuple, list)):  # timm picks the filter inside the op
                resample = random.choice(resample)
            calls.append((_name, args[0] if args else None, resample == Image.BICUBIC))
            return img

        op.aug_fn = recorder
    random.seed(0)
    np.random.seed(0)
    image = Image.new("RGB", (8, 8))
    for _ in range(n):
        rand_augment(image)
    return calls


def our_rand_augment_calls(n, recipe):
    calls = []
    for layer in randomness.rand_augment_params(
        draws(n),
        recipe.rand_augment_n,
        recipe.rand_augment_m,
        recipe.rand_augment_mstd,
        recipe.rand_augment_p,
    ):
        level = layer["magnitude"] / 10
        sign = torch.where(layer["negate"], -1.0, 1.0).double()
        arguments = {
            "Rotate": level * 30 * sign,
            "ShearX": level * 0.3 * sign,
            "ShearY": level * 0.3 * sign,
            "TranslateXRel": level * 0.45 * sign,
            "TranslateYRel": level * 0.45 * sign,
            "Posterize": (level * 4).floor(),
            "Solarize": (level * 256).floor().clamp(max=256),
            "SolarizeAdd": (level * 110).floor().clamp(max=128),
        }
        for name in ("Color", "Contrast", "Brightness", "Sharpness"):
            arguments[name] = level * 1.8 + 0.1
        for i in layer["apply"].nonzero().flatten().tolist():
            name = randomness.RAND_AUGMENT_OPS[int(layer["op"][i])]
            value = float(arguments[name][i]) if name in arguments else None
            calls.append((name, value, bool(layer["bicubic"][i])))
    return calls


@pytest.mark.parametrize(
    "opts",
    [
        [],
        ["DATA.VIEWS.RAND_AUGMENT_N", "1", "DATA.VIEWS.RAND_AUGMENT_M", "6"],
        [
            "DATA.VIEWS.RAND_AUGMENT_N",
            "3",
            "DATA.VIEWS.RAND_AUGMENT_M",
            "3",
            "DATA.CROP_SIZE",
            "64",
        ],
    ],
)
def test_rand_augment_parameters_follow_timm(opts):
    """InfoMin's RandAugment, and others set by DATA.VIEWS: the GPU pipeline's recipe against timm
    built by the CPU pipeline from the same config."""
    cfg = load_cfg(INFOMIN, opts)
    recipe = BatchedViews(cfg, "cpu").view
    ours, ref = our_rand_augment_calls(N, recipe), record_timm_rand_augment(N, cfg)
    slots = recipe.rand_augment_n * N  # each op applied with p 0.5: slots / 2 ops expected in all
    assert abs(len(ours) - len(ref)) < 4 * (2 * slots * 0.25) ** 0.5
    assert close(len(ref) / slots, 0.5, slots)
    for name in randomness.RAND_AUGMENT_OPS:
        ours_op = [c for c in ours if c[0] == name]
        ref_op = [c for c in ref if c[0] == name]
        assert close(len(ours_op) / slots, 1 / 30, slots), name
        assert close(len(ref_op) / slots, 1 / 30, slots), name
        if ours_op[0][1] is not None:
            # small samples (~400 per op): the KS limit for that size
            limit = 1.95 * (1 / len(ours_op) + 1 / len(ref_op)) ** 0.5
            assert ks_statistic([c[1] for c in ours_op], [c[1] for c in ref_op]) < limit, name
    geometric = [
        c for c in ours if c[0] in ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
    ]
    ref_geometric = [c for c in ref if c[0] in {g[0] for g in geometric}]
    for calls in (geometric, ref_geometric):
        assert close(np.mean([c[2] for c in calls]), 0.5, len(calls))


# the published orders (facts.md), independent of recipes.py
REFERENCE_STEPS = {
    "mocov1": ("grayscale", "jitter", "flip"),
    "mocov2": ("jitter", "grayscale", "blur", "flip"),
    "infomin": ("flip", "jitter", "blur", "rand_augment", "grayscale"),
}
CPU_STEPS = {
    "RandomHorizontalFlip": "flip",
    "RandomGrayscale": "grayscale",
    "ColorJitter": "jitter",
    "RandAugment": "rand_augment",
    "GaussianBlur": "blur",
}


def cpu_steps(cfg) -> tuple[str, ...]:
    steps = []
    for t in build_views(cfg).augmentation.transforms[1:]:
        inner = t.transforms[0] if isinstance(t, T.RandomApply) else t
        if type(inner).__name__ in CPU_STEPS:
            steps.append(CPU_STEPS[type(inner).__name__])
    return tuple(steps)


@pytest.mark.parametrize(
    "opts, expected",
    [
        *[(["DATA.AUGMENTATION", name], steps) for name, steps in REFERENCE_STEPS.items()],
        (["DATA.VIEWS.STEPS", "('blur', 'grayscale', 'flip')"], ("blur", "grayscale", "flip")),
        (
            ["DATA.AUGMENTATION", "mocov2", "DATA.VIEWS.STEPS", "('rand_augment', 'jitter')"],
            ("rand_augment", "jitter"),
        ),
    ],
)
def test_both_pipelines_run_the_recipe_steps_in_order(opts, expected):
    cfg = load_cfg(INFOMIN, opts)
    assert cpu_steps(cfg) == expected
    assert BatchedViews(cfg, "cpu").view.steps == expected


@pytest.fixture(scope="module")
def bccd(shared_data):
    return shared_data / "bccd" / "JPEGImages"


def gpu_views(cfg, images, indices, epoch=0):
    dataset = EncodedImages(images, seed=cfg.SEED)
    batch, _ = collate_encoded([dataset[(epoch, i)] for i in indices])
    return BatchedViews(cfg, "cpu")(*batch)


def small_infomin(*opts):
    return load_cfg(
        INFOMIN,
        ["DATA.CROP_SIZE", "96", "MODEL.JIGSAW.CELL", "40", "MODEL.JIGSAW.PATCH", "32", *opts],
    )


def test_pipeline_views_shapes_ranges_and_reproducibility(bccd):
    cfg = small_infomin()
    images = FolderImages(str(bccd))
    (query, key, patches), replaced = gpu_views(cfg, images, range(6))
    assert replaced == []
    assert query.shape == key.shape == (6, 3, 96, 96) and patches.shape == (6, 9, 3, 32, 32)
    lowest = (0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    highest = (1 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    for view in (query, key, patches):
        assert view.dtype == torch.float32
        assert view.min() >= lowest.min() - 1e-4 and view.max() <= highest.max() + 1e-4
    assert not torch.equal(query, key)
    again, _ = gpu_views(cfg, images, range(6))
    assert all(torch.equal(a, b) for a, b in zip((query, key, patches), again))
    other_epoch, _ = gpu_views(cfg, images, range(6), epoch=1)
    assert not torch.equal(other_epoch[0], query)
    # a sample's views depend on its own seed only, not on the rest of its batch
    alone, _ = gpu_views(cfg, images, [3])
    assert all(torch.equal(a[0], b[3]) for a, b in zip(alone, (query, key, patches)))


def test_gpu_pipeline_pixel_statistics_match_the_cpu_pipeline(bccd):
    """Same recipe, same images: per-channel mean and std of the views, averaged over 4 views of
    48 images, agree between the two pipelines (they differ by random draws only)."""
    cfg = small_infomin("MODEL.JIGSAW.ENABLED", "False")
    images = FolderImages(str(bccd))
    indices = range(48)
    gpu, cpu = [], []
    for epoch in range(2):
        views, _ = gpu_views(cfg, images, indices, epoch)
        gpu += views
        dataset = ImageViews(images, build_views(cfg), seed=cfg.SEED)
        cpu += collate_views([dataset[(epoch, i)] for i in indices])[0]
    gpu, cpu = torch.cat(gpu), torch.cat(cpu)
    for stat in (lambda x: x.mean(dim=(0, 2, 3)), lambda x: x.std(dim=(0, 2, 3))):
        assert torch.allclose(stat(gpu), stat(cpu), atol=0.08), (stat(gpu), stat(cpu))


@pytest.fixture(scope="module")
def square_photos(bccd, tmp_path_factory):
    """Square crops of BCCD photographs as PNGs: losslessly stored, so both pipelines' decoders
    give the same pixels, and square, so a crop of scale (1, 1) is the whole image."""
    folder = tmp_path_factory.mktemp("square")
    for i, path in enumerate(sorted(glob.glob(str(bccd / "*.jpg")))[:4]):
        Image.open(path).convert("RGB").crop((100 + 20 * i, 60, 280 + 20 * i, 240)).save(
            folder / f"{i}.png"
        )
    return FolderImages(str(folder))


@pytest.mark.parametrize(
    "opts",
    [
        [
            "DATA.AUGMENTATION",
            "mocov2",
            "DATA.CROP_SIZE",
            "64",
            "DATA.VIEWS.STEPS",
            "('blur', 'grayscale', 'flip')",
            "DATA.VIEWS.BLUR_SIGMA",
            "(3.5, 3.5)",
        ],
        [
            "DATA.CROP_SIZE",
            "48",
            "DATA.VIEWS.STEPS",
            "('flip', 'jitter', 'blur', 'rand_augment')",
            "DATA.VIEWS.JITTER_P",
            "0.0",
            "DATA.VIEWS.RAND_AUGMENT_N",
            "0",
            "DATA.VIEWS.BLUR_SIGMA",
            "(1.2, 1.2)",
        ],
        [
            "DATA.AUGMENTATION",
            "mocov1",
            "DATA.CROP_SIZE",
            "32",
            "DATA.VIEWS.FLIP_P",
            "0.0",
            "DATA.VIEWS.JITTER",
            "(0.0, 0.0, 0.0, 0.0)",
        ],
    ],
)
def test_both_pipelines_make_the_same_view_given_the_same_parameters(square_photos, opts):
    """DATA.VIEWS keys at probabilities 0 or 1 and one-point ranges leave nothing to chance (the
    whole-image crop, flip or not, grayscale, blur at one sigma scaled to the crop, RandAugment of
    0 ops): the two pipelines' views then agree pixel for pixel, to the tolerances of the single
    ops (tests/pretrain/test_gpu_ops.py: resize and blur 1 level each)."""
    cfg = load_cfg(
        INFOMIN,
        [
            "DATA.CROP_SCALE",
            "(1.0, 1.0)",
            "DATA.VIEWS.FLIP_P",
            "1.0",
            "DATA.VIEWS.GRAYSCALE_P",
            "1.0",
            "DATA.VIEWS.BLUR_P",
            "1.0",
            "MODEL.JIGSAW.ENABLED",
            "False",
            *opts,
        ],
    )
    indices = range(len(square_photos))
    gpu, _ = gpu_views(cfg, square_photos, indices)
    dataset = ImageViews(square_photos, build_views(cfg), seed=cfg.SEED)
    cpu, _ = collate_views([dataset[(0, i)] for i in indices])
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    for a, b in zip(gpu, cpu):
        levels = ((a - b) * std * 255).abs()
        assert levels.max() < 2.01 and levels.mean() < 0.2, (levels.max(), levels.mean())
    assert not torch.equal(gpu[0], gpu[0].flip(-1))  # the photos are not symmetric


def test_undecodable_images_are_replaced_and_named(bccd, tmp_path):
    for i, path in enumerate(sorted(glob.glob(str(bccd / "*.jpg")))[:3]):
        (tmp_path / f"{i}.jpg").write_bytes(open(path, "rb").read())
    (tmp_path / "1.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (query, key, _), replaced = gpu_views(small_infomin(), FolderImages(str(tmp_path)), range(3))
    assert [name for name, _ in replaced] == [str(tmp_path / "1.jpg")]
    assert query.shape[0] == 3 and torch.isfinite(query).all()


def test_pack_round_trip_and_truncation_error(bccd, tmp_path):
    pack = tmp_path / "bccd.pack"
    count = build_pack(str(bccd), str(pack))
    folder, packed = FolderImages(str(bccd)), open_images(str(pack))
    assert isinstance(packed, PackedImages) and len(packed) == count == len(folder)
    for i in (0, count // 2, count - 1):
        assert packed.read(i) == folder.read(i)
    data = pack / "images.bin"
    data.write_bytes(data.read_bytes()[:-10])
    with pytest.raises(DatasetError, match="disagree"):
        PackedImages(str(pack))


@pytest.mark.integration
def test_pretraining_runs_and_resumes_with_the_gpu_pipeline_from_a_pack(bccd, tmp_path):
    pack = tmp_path / "pack"
    run_tool("tools/pack_images.py", str(bccd), str(pack))
    common = [
        "--config-file",
        INFOMIN,
        "MODEL.ARCH",
        "resnet18",
        "MODEL.HEAD_HIDDEN_DIM",
        "64",
        "MODEL.QUEUE_SIZE",
        "64",
        "DATA.CROP_SIZE",
        "64",
        "MODEL.JIGSAW.CELL",
        "32",
        "MODEL.JIGSAW.PATCH",
        "24",
        "DATA.PIPELINE",
        "gpu",
        "DATA.ROOT",
        str(pack),
        "DATA.NUM_WORKERS",
        "1",
        "SOLVER.BATCH_SIZE",
        "8",
        "SOLVER.CHECKPOINT_PERIOD",
        "2",
        "LOG_PERIOD",
        "1",
        "OUTPUT_DIR",
        str(tmp_path / "out"),
    ]
    run_tool("tools/pretrain.py", *common, "SOLVER.MAX_ITER", "2")
    out = run_tool("tools/pretrain.py", "--resume", *common, "SOLVER.MAX_ITER", "3").stdout
    assert "resumed from" in out and "iter 3/3" in out
    state = torch.load(tmp_path / "out" / "model_final.pth", map_location="cpu", weights_only=False)
    assert state["iteration"] == 3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_pipeline_on_the_gpu_matches_itself_on_the_cpu(bccd):
    """nvJPEG and libjpeg-turbo decode a few levels apart, so compare after normalisation."""
    cfg = small_infomin()
    images = FolderImages(str(bccd))
    dataset = EncodedImages(images, seed=cfg.SEED)
    batch, _ = collate_encoded([dataset[(0, i)] for i in range(16)])
    on_gpu, _ = BatchedViews(cfg, "cuda")(*batch)
    on_cpu, _ = BatchedViews(cfg, "cpu")(*batch)
    for a, b in zip(on_gpu, on_cpu):
        assert a.is_cuda and a.shape == b.shape
        assert (a.cpu() - b).abs().mean() < 0.05


def test_a_file_that_is_not_an_image_is_left_out_of_a_pack_and_named(bccd, tmp_path):
    import shutil

    folder = tmp_path / "images"
    folder.mkdir()
    for path in sorted(bccd.glob("*.jpg"))[:3]:
        shutil.copy(path, folder)
    (folder / "notes.jpg").write_text("not an image, whatever its name says\n")
    pack = tmp_path / "p.pack"
    assert build_pack(str(folder), str(pack)) == 3
    assert len(open_images(str(pack))) == 3
    assert (pack / "skipped.txt").read_text().startswith(str(folder / "notes.jpg") + "\t")
    only_text = tmp_path / "text"
    only_text.mkdir()
    (only_text / "a.jpg").write_text("no image here\n")
    with pytest.raises(DatasetError, match="none of its 1 files is an image"):
        build_pack(str(only_text), str(tmp_path / "q.pack"))

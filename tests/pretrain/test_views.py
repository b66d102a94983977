import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image

from pretrain.config import load_cfg
from pretrain.data.views import JigsawPatches, build_views
from pretrain.models.moco import build_moco

INFOMIN = "configs/pretrain/infomin_R50_200ep.yaml"


def test_infomin_augmentation_has_every_recipe_step_with_its_parameters():
    views = build_views(load_cfg(INFOMIN))
    steps = views.augmentation.transforms
    names = [type(s).__name__ for s in steps]
    assert names == [
        "RandomResizedCrop",
        "RandomHorizontalFlip",
        "RandomApply",
        "RandomApply",
        "RandAugment",
        "RandomGrayscale",
        "ToTensor",
        "Normalize",
    ]
    crop, flip, jitter, blur, rand_augment, gray, _, norm = steps
    assert crop.size == (224, 224) and crop.scale == (0.2, 1.0)
    assert flip.p == 0.5
    (cj,) = jitter.transforms
    assert jitter.p == 0.8 and isinstance(cj, T.ColorJitter)
    ranges = [cj.brightness, cj.contrast, cj.saturation, cj.hue]  # ColorJitter(0.8, 0.8, 0.8, 0.2)
    assert np.allclose(ranges, [(0.2, 1.8), (0.2, 1.8), (0.2, 1.8), (-0.2, 0.2)])
    (gb,) = blur.transforms
    assert blur.p == 0.5 and isinstance(gb, T.GaussianBlur) and gb.sigma == (0.1, 2.0)
    assert rand_augment.num_layers == 2 and rand_augment.choice_weights is None
    assert [op.name for op in rand_augment.ops] == [
        "AutoContrast",
        "Equalize",
        "Invert",
        "Rotate",
        "Posterize",
        "Solarize",
        "SolarizeAdd",
        "Color",
        "Contrast",
        "Brightness",
        "Sharpness",
        "ShearX",
        "ShearY",
        "TranslateXRel",
        "TranslateYRel",
    ]
    for op in rand_augment.ops:
        assert (op.magnitude, op.magnitude_std, op.prob) == (10, 0.5, 0.5)
        assert op.hparams["img_mean"] == (124, 116, 104)  # fill = ImageNet mean
    assert gray.p == 0.2
    assert norm.mean == (0.485, 0.456, 0.406) and norm.std == (0.229, 0.224, 0.225)


def test_infomin_views_and_jigsaw_patches_have_the_recipe_shapes():
    views = build_views(load_cfg(INFOMIN))
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), np.uint8))
    query, key, patches = views(image)
    assert query.shape == key.shape == (3, 224, 224)
    assert patches.shape == (9, 3, 64, 64)
    jig_steps = views.jigsaw.transforms
    assert jig_steps[0].size == (255, 255) and jig_steps[0].scale == (0.6, 1.0)


def test_jigsaw_patches_come_from_their_own_cells():
    image = torch.arange(255 * 255, dtype=torch.float32).view(1, 255, 255)
    patches = JigsawPatches()(image)
    for i, patch in enumerate(patches):
        row, col = divmod(i, 3)
        top, left = divmod(int(patch[0, 0, 0].item()), 255)
        assert row * 85 <= top <= row * 85 + 21 and col * 85 <= left <= col * 85 + 21


def test_jigsaw_branch_gives_one_normalised_vector_per_image():
    cfg = load_cfg(
        INFOMIN,
        [
            "MODEL.ARCH",
            "resnet18",
            "MODEL.HEAD_HIDDEN_DIM",
            "64",
            "MODEL.QUEUE_SIZE",
            "16",
            "SOLVER.BATCH_SIZE",
            "2",
        ],
    )
    model = build_moco(cfg)
    patches = torch.randn(2 * 9, 3, 64, 64)
    features = model.query_encoder.backbone(patches)
    out = model.jigsaw_head(features, num_images=2)
    assert out.shape == (2, 128)
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)
    loss, logits, terms, _ = model(
        torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64), patches.view(2, 9, 3, 64, 64)
    )
    assert set(terms) == {"instance", "jigsaw"}
    loss.backward()
    assert model.jigsaw_head.fc.weight.grad is not None
    assert logits.shape == (2, 17)

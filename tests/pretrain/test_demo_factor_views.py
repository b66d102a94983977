"""The views of InfoMin's Table 4 on the demo's world: renderings of one instance share exactly
the chosen factors and differ in the others."""

import numpy as np
import pytest
from PIL import Image

from pretrain.demo import factor_views
from pretrain.demo.factor_views import FACTORS, check_factors, draw_factors, render


def photos_and_objects():
    rng = np.random.default_rng(0)
    photos = [rng.integers(0, 256, (90, 120, 3), dtype=np.uint8) for _ in range(3)]
    objects = np.zeros((4, 28, 28), np.uint8)
    for i, obj in enumerate(objects):  # four distinct shapes
        obj[4 + i : 20 + i, 6 : 10 + 4 * i] = 255
    return photos, objects


def test_a_rendering_is_a_function_of_its_factors():
    photos, objects = photos_and_objects()
    factors = draw_factors(np.random.default_rng(1), len(objects), len(photos))
    first = render(photos, objects, factors, size=32)
    assert first.shape == (32, 32, 3) and first.dtype == np.uint8
    assert np.array_equal(first, render(photos, objects, factors, size=32))


@pytest.mark.parametrize("factor", FACTORS)
def test_changing_one_factor_changes_the_image(factor):
    photos, objects = photos_and_objects()
    rng = np.random.default_rng(2)
    base = draw_factors(rng, len(objects), len(photos))
    changed = dict(base)
    while True:  # a value of that factor that differs visibly
        changed[factor] = draw_factors(rng, len(objects), len(photos))[factor]
        if factor != "object" or changed["object"] != base["object"]:
            break
    assert not np.array_equal(
        render(photos, objects, base, 32), render(photos, objects, changed, 32)
    )


def test_instance_folders_share_exactly_the_chosen_factors(tmp_path, monkeypatch):
    photos, objects = photos_and_objects()
    drawn = []
    monkeypatch.setattr(
        factor_views,
        "render",
        lambda p, o, factors, size: drawn.append(factors) or render(p, o, factors, size),
    )
    factor_views.write_instance_views(
        str(tmp_path), photos, objects, ["object", "colour"], n_instances=2, renderings=3, size=32
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000000", "000001"]
    assert len(list((tmp_path / "000001").glob("*.jpg"))) == 3
    assert Image.open(tmp_path / "000000" / "2.jpg").size == (32, 32)
    for instance in (drawn[:3], drawn[3:]):
        for other in instance[1:]:
            assert other["object"] == instance[0]["object"]
            assert np.array_equal(other["colour"], instance[0]["colour"])
            assert other["position"] != instance[0]["position"]
            assert other["background"] != instance[0]["background"]


def test_an_unknown_factor_is_refused():
    with pytest.raises(ValueError, match=r"unknown view factor\(s\) \['shape'\]"):
        check_factors(["object", "shape"])


def drawn_factors(monkeypatch, shared, n_instances: int, renderings: int, tmp_path) -> list:
    """The factors of every rendering write_instance_views draws, instance by instance."""
    photos, objects = photos_and_objects()
    drawn = []
    monkeypatch.setattr(
        factor_views,
        "render",
        lambda p, o, factors, size: drawn.append(factors) or render(p, o, factors, size),
    )
    factor_views.write_instance_views(
        str(tmp_path),
        photos,
        objects,
        shared,
        n_instances=n_instances,
        renderings=renderings,
        size=8,
    )
    return [drawn[i : i + renderings] for i in range(0, len(drawn), renderings)]


def test_a_dialled_factor_is_shared_by_that_fraction_of_instances(tmp_path, monkeypatch):
    instances = drawn_factors(monkeypatch, {"object": 1.0, "background": 0.3}, 300, 2, tmp_path)
    assert all(a["object"] == b["object"] for a, b in instances)
    shared = sum(a["background"] == b["background"] for a, b in instances) / len(instances)
    assert 0.2 < shared < 0.4  # 0.3, binomial SD 0.026
    assert not any(a["position"] == b["position"] for a, b in instances)


def test_always_and_never_draw_the_renderings_they_drew_before_dialling_existed(
    tmp_path, monkeypatch
):
    """The demo's and Table 4's views (a list of factors) are unchanged by the dial: the same
    settings as probabilities 1 and 0 draw the very same factors."""
    as_list = drawn_factors(monkeypatch, ["object"], 20, 3, tmp_path / "list")
    as_probabilities = drawn_factors(
        monkeypatch, {"object": 1.0, "background": 0.0}, 20, 3, tmp_path / "probabilities"
    )
    assert repr(as_list) == repr(as_probabilities)


def test_a_share_probability_outside_0_1_is_refused():
    with pytest.raises(ValueError, match=r"\[0, 1\]: \{'object': 1.5\}"):
        factor_views.share_probabilities({"object": 1.5})

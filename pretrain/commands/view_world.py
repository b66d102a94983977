"""Write a views dataset of the demo's world in which what two views share is dialled: InfoMin's own
toy, for sweeping views from too little shared information to too much (a reverse U).

    python tools/view_world.py --output worlds/object0.5 --share object=0.5
    python tools/view_world.py --output worlds/object1_background0.5 --share object=1 background=0.5

--share FACTOR=P ...: the probability that the renderings of an instance share each factor
(object, colour, size, position, background; unnamed factors are never shared), decided once per
instance (pretrain/demo/factor_views.py). Writes, each once and atomically:
  OUTPUT/train     instance folders for pretraining (DATA.ROOT, with DATA.VIEWS_FROM folder),
                   from Fashion-MNIST's training items;
  OUTPUT/heldout   instances with the same sharing from the test items, for tools/sweep.py's
                   --heldout (give it "{DATA.ROOT}/../heldout" to follow each point's world);
  the demo's labelled objects (the kNN readout's EVAL.KNN_TRAIN_ROOT / KNN_TEST_ROOT), shared by
  every world and by `make demo`, under .cache/.
The folders it wrote are printed.
"""

from __future__ import annotations

import argparse
import json
import os

from pretrain.common.cli import run_entry_point
from pretrain.common.errors import ConfigError

# The checkout: the demo world's photographs and objects are cached in its .cache/.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SETTINGS_FILE = "world.json"


def parse_share(tokens: list[str]) -> dict[str, float]:
    from pretrain.demo.factor_views import share_probabilities

    share = {}
    for token in tokens:
        name, sep, value = token.partition("=")
        try:
            share[name] = float(value) if sep else 1.0
        except ValueError:
            raise ConfigError(f"--share {token}: expected FACTOR=PROBABILITY") from None
    try:
        return share_probabilities(share)
    except ValueError as err:
        raise ConfigError(f"--share: {err}") from None


def check_settings(output: str, settings: dict) -> None:
    """A world folder holds one setting: writing another into it would mix two worlds."""
    path = os.path.join(output, SETTINGS_FILE)
    if os.path.isfile(path):
        with open(path) as f:
            before = json.load(f)
        if before != settings:
            raise ConfigError(
                f"{output} holds a world written with {before}, not {settings}; "
                f"choose another --output"
            )


def write_world(
    output: str,
    share: dict[str, float],
    instances: int,
    renderings: int,
    heldout_instances: int,
    seed: int,
) -> dict[str, str]:
    """The world's folders: {"train", "heldout", "objects_train", "objects_test"}."""
    from pretrain.demo import factor_views, synthetic
    from pretrain.common.atomic_io import atomic_write_text

    settings = {
        "share": share,
        "instances": instances,
        "renderings": renderings,
        "heldout_instances": heldout_instances,
        "seed": seed,
    }
    check_settings(output, settings)
    os.makedirs(output, exist_ok=True)
    atomic_write_text(json.dumps(settings, indent=2) + "\n", os.path.join(output, SETTINGS_FILE))
    cache = os.path.join(REPO, ".cache")
    photos = os.path.join(cache, "demo")
    train = factor_views.build(
        os.path.join(output, "train"), photos, share, instances, renderings, seed=seed
    )
    heldout = factor_views.build(
        os.path.join(output, "heldout"),
        photos,
        share,
        heldout_instances,
        2,
        seed=seed + 1,
        split="t10k",
    )
    # The demo's own labelled objects (its default sizes: the same folder `make demo` builds).
    data = synthetic.build(
        os.path.join(cache, f"demo_data_v{synthetic.LAYOUT}_0_60_120_3000_1000"),
        photos,
        0,
        60,
        120,
        n_objects_train=3000,
        n_objects_test=1000,
    )
    return {
        "train": train,
        "heldout": heldout,
        "objects_train": os.path.join(data, "objects", "train"),
        "objects_test": os.path.join(data, "objects", "test"),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", required=True, help="the world's folder")
    parser.add_argument(
        "--share",
        nargs="+",
        required=True,
        metavar="FACTOR=P",
        help="probability that an instance's renderings share each factor",
    )
    parser.add_argument(
        "--instances",
        type=int,
        nargs=2,
        default=(3000, 3),
        metavar=("N", "VIEWS"),
        help="instances for pretraining, renderings of each (the demo's: 3000 3)",
    )
    parser.add_argument(
        "--heldout-instances",
        type=int,
        default=1024,
        help="held-out instances (two renderings each) for I_NCE",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if min(args.instances) < 1 or args.instances[1] < 2 or args.heldout_instances < 2:
        parser.error("need at least one instance, two renderings of each, two held-out instances")
    share = parse_share(args.share)
    folders = write_world(
        os.path.abspath(args.output), share, *args.instances, args.heldout_instances, args.seed
    )
    print(f"views for pretraining (DATA.ROOT, DATA.VIEWS_FROM folder): {folders['train']}")
    print(f"held-out views (tools/sweep.py --heldout): {folders['heldout']}")
    print(
        f"labelled objects (EVAL.KNN_TRAIN_ROOT, EVAL.KNN_TEST_ROOT): "
        f"{folders['objects_train']} {folders['objects_test']}"
    )
    return 0


def entry_point() -> None:
    run_entry_point(main)


if __name__ == "__main__":
    entry_point()

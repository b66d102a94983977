"""The demo's world (tools/demo.py, tools/view_world.py): Fashion-MNIST objects composited onto
photographs with exact boxes and masks (synthetic.py), and views that share chosen factors of that
world (factor_views.py). Data generators for the demo and its tests, not library code: nothing
below the commands imports them."""

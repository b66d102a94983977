"""What one training step feeds a method's forward, per sample: the words the method contract
(models/method.py, `views`) declares with and the data pipeline (pipelines.py, views.py) builds
from, so that the data layer needs to know no method by name."""

from __future__ import annotations

PAIR = "pair"  # two augmented views of one image
PAIR_JIGSAW = "pair+jigsaw"  # two views, JigSaw patches of the first with JIGSAW
INDEXED = "image+index"  # one view and the sample's index (a memory bank's row)
INDEXED_JIGSAW = "image+jigsaw+index"  # the same with the image's JigSaw patches
MULTI_CROP = "multi-crop"  # two large crops, then DATA.MULTI_CROP.NUM_SMALL small
CHANNEL_GROUPS = "channel-groups"  # one image split into DATA.CHANNEL_SPLIT's groups

INDEXED_INPUTS = (INDEXED, INDEXED_JIGSAW)

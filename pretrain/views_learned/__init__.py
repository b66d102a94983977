"""Learned views (InfoMin, Tian et al. 2020, Sec. 4.2 / App. B.5): a pixel-wise invertible flow g
trained adversarially against an I_NCE approximator (optionally with classifier terms on a labelled
subset); the frozen g then makes the two views as channel groups of g(x). The generator and the
views it makes are a data transform (data/flow.py, data/learned_views.py), re-exported here;
learning it is this package's job."""

from ..data.flow import FlowConfigError, PixelFlow, split_views
from ..data.learned_views import GeneratorFileError, LearnedViews, load_generator, save_generator
from .approximator import NCEApproximator, ViewEncoder, i_nce, symmetric_info_nce
from .bank import ImageBank
from .learner import LearnerSettings, ViewLearner
from .training import Schedule, probe_i_nce, train_views

__all__ = [
    "FlowConfigError",
    "GeneratorFileError",
    "ImageBank",
    "LearnedViews",
    "LearnerSettings",
    "NCEApproximator",
    "PixelFlow",
    "Schedule",
    "ViewEncoder",
    "ViewLearner",
    "i_nce",
    "load_generator",
    "probe_i_nce",
    "save_generator",
    "split_views",
    "symmetric_info_nce",
    "train_views",
]

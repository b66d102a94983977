"""Pretraining configuration: fvcore's CfgNode, the same YAML + `_BASE_` + `KEY VALUE` language as
Detectron2. Defaults are the ImageNet MoCo v2 recipe (../shared/docs/facts.md); method configs in
configs/pretrain/ override them. The supervised baseline's and the linear readout's configs (below)
use the same names for the same things."""

from __future__ import annotations

import os

from fvcore.common.config import CfgNode as CN

from .common.errors import FILE_ERRORS, ConfigError, file_error_text
from .common.output_dir import derived_output_dir

_C = CN()
# "": output/pretrain/<config name>_seed<SEED> (pretrain/common/output_dir.derived_output_dir), so
# that runs of different configs or seeds never share a folder. The readouts' work the same way.
_C.OUTPUT_DIR = ""
_C.SEED = 0

_C.MODEL = CN()
# The method (pretrain/models/registry.py; each is a models/method.py Method): "moco" (MoCo v1/v2,
# InfoMin; CMC with MODEL.CMC.ENABLED),
# "simclr" (NT-Xent over the global batch), "byol" (predictor, EMA target), "simsiam" (predictor,
# stop-gradient), "mocov3" (predictor, momentum keys of the batch as negatives), "swav"
# (prototypes, Sinkhorn codes, swapped prediction: MODEL.SWAV), "dino" (self-distillation with a
# centred, sharpened EMA teacher: MODEL.DINO); swav and dino also read DATA.MULTI_CROP's small
# crops. "insdis" (memory bank, one view per image), "pirl" (memory bank + MODEL.JIGSAW):
# MODEL.MEMORY_BANK. The others share the MODEL keys below; MODEL.SHUFFLE_BN, QUEUE_SIZE,
# BATCH_NEGATIVES, BN_SPLITS, JIGSAW and CMC are MoCo's.
# Recipes: configs/pretrain/<method>_R50_*.yaml.
_C.MODEL.METHOD = "moco"
_C.MODEL.ARCH = "resnet50"  # a torchvision ResNet / ResNeXt constructor name, or resnext152_32x8d
_C.MODEL.WIDTH = 1  # channel multiplier of every stage (ResNet-50 x2, x4)
# Layers before layer1, for the image size (pretrain/models/backbone.py STEMS): "imagenet" (7x7/2
# conv + max-pool, stride 32 overall), "cifar" (3x3/1 conv, stride 8: 32 px images), "tinyimagenet"
# (3x3/1 conv + max-pool, stride 16: 64-96 px). Checkpoints record it in their config; readouts
# and tools/convert.py read it from there; Detectron2 builds it with MODEL.RESNETS.STEM_TYPE.
_C.MODEL.STEM = "imagenet"
# Each residual block's last BN scale starts at 0 (torchvision's zero_init_residual): the releases
# of SimSiam, MoCo v3 and SimCLR build their ResNets so, BYOL's (haiku) its bottleneck blocks;
# MoCo, SwAV, DINO, CMC and InfoMin's do not.
_C.MODEL.ZERO_INIT_RESIDUAL = False
# The law the trunk's convs and the projection heads' and predictors' Linear layers are drawn by
# (pretrain/models/release_init.py): "torch" (the PyTorch releases), "tf" (SimCLR's TensorFlow
# release), "haiku" (BYOL's JAX release).
_C.MODEL.INIT = "torch"
# "linear" (MoCo v1) | "mlp" (MoCo v2, InfoMin) | "simclr" | "byol" | "simsiam" | "mocov3" | "swav"
# (those papers' projection MLPs with BN, pretrain/models/heads.py) | "dino" (DINO's head, the
# only one dino takes: pretrain/models/dino.py; hidden HEAD_HIDDEN_DIM, bottleneck FEAT_DIM)
_C.MODEL.HEAD = "mlp"
_C.MODEL.HEAD_HIDDEN_DIM = 2048
_C.MODEL.FEAT_DIM = 128
_C.MODEL.QUEUE_SIZE = 65536  # K negatives; 0 with BATCH_NEGATIVES: the batch's keys only (MoCo v3)
# Also contrast with the other keys of the current (global) batch, as SimCLR and MoCo v3 do. They
# come from the key encoder of this very step, so unlike queued keys they cannot be told from the
# positive by their age: early in a short run that shortcut is what the loss learns
# (tools/fresh_keys.py).
_C.MODEL.BATCH_NEGATIVES = False
_C.MODEL.MOMENTUM = 0.999  # key encoder EMA (BYOL's tau_base, MoCo v3's m)
# byol, mocov3: anneal the momentum from MODEL.MOMENTUM to 1 over the run by a half cosine (BYOL
# Sec. 3.2; MoCo v3's --moco-m-cos), pretrain/models/ema.py.
_C.MODEL.MOMENTUM_COSINE = False
# The run length (iterations) MODEL.MOMENTUM was chosen for: a run of another length uses
# MOMENTUM ** (MOMENTUM_REFERENCE_ITERS / its iterations), the same EMA schedule in fractions of
# the run (pretrain/models/ema.py run_length_momentum; short comparisons of EMA methods). 0: off.
_C.MODEL.MOMENTUM_REFERENCE_ITERS = 0
# Hidden width of the predictor MLP of byol (4096), simsiam (512), mocov3 (4096); its output has
# MODEL.FEAT_DIM dimensions (pretrain/models/heads.py build_predictor).
_C.MODEL.PREDICTOR_HIDDEN_DIM = 4096
_C.MODEL.TEMPERATURE = 0.2
_C.MODEL.SHUFFLE_BN = True  # shuffle the key batch across processes before the key encoder's BN
# BN groups per process for shuffle-BN (pretrain/models/split_bn.py); 0: enough for 8 groups over
# all processes (MoCo's 8 GPUs), fewer where a group would hold under 16 images, at least 2 in one
# process.
_C.MODEL.BN_SPLITS = 0
# BN statistics over the global batch instead of shuffle-BN. With a queue this does not close the
# leak shuffle-BN closes: the positive is the only logit computed under the current batch's
# statistics (queued keys came from earlier batches), so the build prints a warning.
_C.MODEL.SYNC_BN = False
# PIRL's JigSaw branch (InfoMin): patches of a third view, encoded by the query encoder, shuffled,
# concatenated and projected; contrasted with the same key and queue.
_C.MODEL.JIGSAW = CN()
_C.MODEL.JIGSAW.ENABLED = False
_C.MODEL.JIGSAW.GRID = 3
_C.MODEL.JIGSAW.CELL = 85
_C.MODEL.JIGSAW.PATCH = 64
_C.MODEL.JIGSAW.LOSS_WEIGHT = 0.5  # loss = (1 - w) * L_instance + w * L_jigsaw
# CMC (Tian et al. 2019), MoCo style: the views are the channel groups DATA.CHANNEL_SPLIT of one
# augmented image in DATA.COLOR_SPACE (two, or three); one encoder per view (its first conv takes
# that view's channels), each with its own momentum key encoder and queue; loss = L(q1 vs k2,
# queue 2) + L(q2 vs k1, queue 1) for two views (pretrain/models/cmc.py). The other MODEL keys
# apply to every encoder.
_C.MODEL.CMC = CN()
_C.MODEL.CMC.ENABLED = False
# Which pairs of views are contrasted (CMC Sec. 3.3): "core" (view 1 with each other view) or
# "full" (every pair); the same with two views.
_C.MODEL.CMC.GRAPH = "core"
# The memory bank of insdis and pirl (pretrain/models/memory_bank.py): one embedding per training
# image, the positive's key and the negatives' source.
_C.MODEL.MEMORY_BANK = CN()
_C.MODEL.MEMORY_BANK.LOSS = "nce"  # "nce" (InsDis Eq. 5-7, Z from the first batch) | "infonce"
_C.MODEL.MEMORY_BANK.NEGATIVES = 4096  # K drawn uniformly per image per step (InsDis 4096)
_C.MODEL.MEMORY_BANK.MOMENTUM = 0.5  # v <- normalise(m v + (1 - m) f) after each step
# SwAV (Caron et al. 2020; pretrain/models/swav.py): K prototypes on the MODEL.FEAT_DIM
# embedding, codes by SINKHORN_ITERATIONS Sinkhorn-Knopp rounds at EPSILON over the global batch,
# predicted at MODEL.TEMPERATURE (0.1 in the paper); the prototypes are not updated during the
# first FREEZE_PROTOTYPES_EPOCHS (the paper: 1).
_C.MODEL.SWAV = CN()
_C.MODEL.SWAV.NUM_PROTOTYPES = 3000
_C.MODEL.SWAV.EPSILON = 0.05
_C.MODEL.SWAV.SINKHORN_ITERATIONS = 3
_C.MODEL.SWAV.FREEZE_PROTOTYPES_EPOCHS = 1.0
# The queue of App. A.1 for small batches: the last QUEUE_LENGTH embeddings of each large crop
# (over all processes, a multiple of their number) join the batch in the Sinkhorn once the queue
# is full; filled from QUEUE_START_EPOCH on. 0: none (the 4096-image recipe's). The release's
# bs-256 recipes: 3840 from epoch 15.
_C.MODEL.SWAV.QUEUE_LENGTH = 0
_C.MODEL.SWAV.QUEUE_START_EPOCH = 15.0
# DINO (Caron et al. 2021; pretrain/models/dino.py), with MODEL.HEAD dino and the teacher EMA of
# MODEL.MOMENTUM / MOMENTUM_COSINE: the head's OUT_DIM outputs (K), its last layer's norm fixed to
# 1 (NORM_LAST_LAYER) and not updated during the first FREEZE_LAST_LAYER_EPOCHS; student
# temperature STUDENT_TEMP; teacher temperature linear from WARMUP_TEACHER_TEMP to TEACHER_TEMP
# over the first WARMUP_TEACHER_TEMP_EPOCHS (0: TEACHER_TEMP throughout); centre EMA momentum
# CENTER_MOMENTUM; each student gradient clipped to norm CLIP_GRAD on its own (0: off).
_C.MODEL.DINO = CN()
_C.MODEL.DINO.OUT_DIM = 65536
_C.MODEL.DINO.NORM_LAST_LAYER = True
_C.MODEL.DINO.FREEZE_LAST_LAYER_EPOCHS = 1.0
_C.MODEL.DINO.STUDENT_TEMP = 0.1
_C.MODEL.DINO.TEACHER_TEMP = 0.04
_C.MODEL.DINO.WARMUP_TEACHER_TEMP = 0.04
_C.MODEL.DINO.WARMUP_TEACHER_TEMP_EPOCHS = 0
_C.MODEL.DINO.CENTER_MOMENTUM = 0.9
_C.MODEL.DINO.CLIP_GRAD = 3.0
# AMDIM (Bachman et al. 2019; pretrain/models/amdim.py): the global feature (pooled layer4) and
# the maps of LOCAL_STAGES (the release's 5x5 and 7x7 maps: the first also predicts itself) in
# MODEL.FEAT_DIM dimensions (n_rkhs); scores soft-clipped to +-TCLIP, REG_WEIGHT x their mean
# square added; HIDDEN_BN: batch norm inside the 1x1 embeddings (the release's --use_bn).
_C.MODEL.AMDIM = CN()
_C.MODEL.AMDIM.LOCAL_STAGES = (3, 2)
_C.MODEL.AMDIM.TCLIP = 20.0
_C.MODEL.AMDIM.REG_WEIGHT = 0.05
_C.MODEL.AMDIM.HIDDEN_BN = False
# Entropy and reconstruction (Rodríguez-Gálvez et al. 2023; pretrain/entropy_reconstruction.py):
# every method logs H, Rec and I_ER = H - Rec of the pair its step exposes, with a von
# Mises-Fisher kernel of concentration KAPPA on the sphere (the release's default, 10). With
# OBJECTIVE True (byol, dino, swav: the paper's ER variants) the loss becomes
# Rec - ENTROPY_WEIGHT * H of the branch that gets gradients (each method's docstring says which).
_C.MODEL.ER = CN()
_C.MODEL.ER.KAPPA = 10.0
_C.MODEL.ER.OBJECTIVE = False
_C.MODEL.ER.ENTROPY_WEIGHT = 1.0

_C.DATA = CN()
_C.DATA.ROOT = ""  # image folder (class folders or flat) or a .txt list; else $PRETRAIN_DATA_ROOT
_C.DATA.AUGMENTATION = "mocov2"  # "mocov1" | "mocov2" | "infomin"
_C.DATA.CROP_SIZE = 224
_C.DATA.CROP_SCALE = (0.2, 1.0)
_C.DATA.NUM_WORKERS = 8  # per process
# The check of DATA.ROOT's images before training (pretrain/data/checks.py): "header" reads each
# file's first and last bytes (finds missing, empty and non-image files, and JPEGs / PNGs cut
# short); "decode" decodes every image (also finds damage inside a file; tools/pretrain.py
# --check-data); "off". Kept in OUTPUT_DIR/data_check.json.
_C.DATA.CHECK = "header"
# Keep each file's verdict in ~/.cache/infomin-det/image_checks (by path, size and modification
# time): another run on the same images checks only the files that changed.
_C.DATA.CHECK_CACHE = True
# An image the check or the loader cannot use: "skip" leaves it out (a loader draws another image)
# and lists it in OUTPUT_DIR/bad_images.txt; "error" stops with one line naming it.
_C.DATA.ON_BAD_IMAGE = "skip"
# "cpu": PIL + torchvision/timm in the DataLoader workers; "gpu": workers read bytes, the device
# decodes (nvJPEG) and augments whole batches (pretrain/data/gpu). DATA.ROOT may be a pack
# (tools/pack_images.py) for either.
_C.DATA.PIPELINE = "cpu"
# Where the two views come from: "image", two draws of DATA.AUGMENTATION on one image; "folder",
# each folder under DATA.ROOT is one instance and its views are two of its images, each put through
# DATA.AUGMENTATION (pretrain/data/instances.py; e.g. pretrain/demo/factor_views.py's renderings).
_C.DATA.VIEWS_FROM = "image"
# The strengths of the DATA.AUGMENTATION preset's view, one key each (pretrain/data/recipes.py);
# both pipelines read them. -1 (numbers) or () (tuples): the preset's value, so a config that sets
# none runs the preset exactly (write probabilities and strengths as floats: 1.0, not 1). They do
# not touch the JigSaw view (PyContrast's: crop and flip).
# The crop's lower bound is DATA.CROP_SCALE; JigSaw on/off is MODEL.JIGSAW.ENABLED.
_C.DATA.VIEWS = CN()
# The ops after the crop, in order, each at most once, of "flip", "jitter", "grayscale", "blur",
# "rand_augment"; leave one out to turn it off, add one to a preset that lacks it (it then runs at
# the strengths below, MoCo v2's / InfoMin's where unset). Presets: mocov1 (grayscale, jitter,
# flip), mocov2 (jitter, grayscale, blur, flip), infomin (flip, jitter, blur, rand_augment,
# grayscale).
_C.DATA.VIEWS.STEPS = ()
_C.DATA.VIEWS.FLIP_P = -1.0  # horizontal flip probability (presets 0.5)
# Colour-jitter strength x of InfoMin Fig. 11(b): ColorJitter(0.8x, 0.8x, 0.8x, 0.2x). Presets:
# infomin x = 1, mocov2 x = 0.5; mocov1's (0.4, 0.4, 0.4, 0.4) is not of this form.
_C.DATA.VIEWS.JITTER_STRENGTH = -1.0
# Or the explicit (brightness, contrast, saturation, hue) of ColorJitter; not with JITTER_STRENGTH.
_C.DATA.VIEWS.JITTER = ()
_C.DATA.VIEWS.JITTER_P = -1.0  # probability the jitter runs (mocov1 1.0, others 0.8)
_C.DATA.VIEWS.GRAYSCALE_P = -1.0  # presets 0.2
# Gaussian blur sigma range (low, high) for a 224 px crop, scaled by DATA.CROP_SIZE / 224 (presets
# (0.1, 2.0)); the kernel is ~10% of the crop, odd.
_C.DATA.VIEWS.BLUR_SIGMA = ()
_C.DATA.VIEWS.BLUR_P = -1.0  # presets 0.5
# timm RandAugment: ops per image and magnitude (integer, of 10); infomin 2 and 10 (magnitude noise
# std 0.5, each op with p 0.5, translation up to 45% of the crop at magnitude 10, as PyContrast).
# The GPU pipeline's per-view random budget (96 uniforms) allows up to 10 ops.
_C.DATA.VIEWS.RAND_AUGMENT_N = -1
_C.DATA.VIEWS.RAND_AUGMENT_M = -1
# Which two views are contrasted (pretrain/data/view_families.py). "augment": two draws of the view
# recipe above on one image. "patch_offset" (InfoMin Fig. 3): two patches of one image whose corners
# are DATA.PATCH.DISTANCE px apart, each put through the recipe's steps after its crop.
# "frequency" (InfoMin App. B.3): the Gaussian low-pass and the high-pass residual of one crop.
# The last two need DATA.PIPELINE cpu and DATA.VIEWS_FROM image.
_C.DATA.VIEW_FAMILY = "augment"
_C.DATA.PATCH = CN()
# Patch side in px of the source image, resampled to DATA.CROP_SIZE; 0: DATA.CROP_SIZE (no
# resampling but the sub-pixel shift).
_C.DATA.PATCH.SIZE = 0
# Distance between the two patches' top-left corners, px of the source image (an integer: sweeps
# pass 8, not 8.0); direction random among those that keep both patches inside the image. An image
# too small for it is an error, never a silent clamp.
_C.DATA.PATCH.DISTANCE = 128
_C.DATA.FREQUENCY = CN()
# Gaussian sigma of the low-pass view, px of the crop (DATA.CROP_SIZE), not scaled with it; 0.0:
# the low-pass view is the crop and the high-pass view is empty.
_C.DATA.FREQUENCY.SIGMA = 1.0
# Which view is the low-pass one: "random" (drawn per sample, so MoCo's one encoder learns both
# bands) or "query" (always; the key is the high-pass view, for an encoder per band). The high-pass
# view is 6-20x fainter (input std 0.04 vs 0.39 at sigma 0.7, BCCD at 64 px): with "random" both
# bands share each batch's BN statistics, with "query" each batch holds one band and BN evens that.
_C.DATA.FREQUENCY.LOW_PASS_VIEW = "random"
# CMC's views (MODEL.CMC.ENABLED; unused otherwise, and "" required then): the colour space the
# augmented RGB view is converted to, one of rgb, lab, luv, xyz, ycbcr, yiq, ydbdr, hsv
# (pretrain/data/color_spaces.py), each channel then mapped from its range over the RGB cube to
# [-1, 1]; and (k1, k2): the first k1 channels are view 1, the other k2 view 2. (1, 2) is luma |
# chroma for lab (L | ab), ydbdr, ycbcr, yiq, luv; H | SV for hsv; R | GB for rgb. (1, 1, 1):
# three views of one channel each (L | a | b), contrasted over MODEL.CMC.GRAPH.
# "learned" instead of a colour space: the views are g(x) split by CHANNEL_SPLIT, g the frozen
# generator in the file DATA.LEARNED_VIEWS (tools/learn_views.py; InfoMin Sec. 4.2), applied to
# the ImageNet-normalised augmented image; the readouts apply g too.
_C.DATA.COLOR_SPACE = ""
_C.DATA.CHANNEL_SPLIT = (1, 2)
_C.DATA.LEARNED_VIEWS = ""
# Multi-crop (SwAV, Caron et al. 2020, Sec. 3.2; pretrain/data/multi_crop.py): besides the two
# large crops (the recipe at DATA.CROP_SIZE over DATA.CROP_SCALE) each image gives NUM_SMALL small
# crops of the same recipe at SMALL_SIZE px over SMALL_SCALE of its area; the model gets
# (large_1, large_2, small_1, ...). 0: off, the views are the usual pair. Read by the methods
# whose loss uses small crops (swav, dino); CPU pipeline, DATA.VIEWS_FROM image only.
_C.DATA.MULTI_CROP = CN()
_C.DATA.MULTI_CROP.NUM_SMALL = 0
_C.DATA.MULTI_CROP.SMALL_SIZE = 96
_C.DATA.MULTI_CROP.SMALL_SCALE = (0.05, 0.14)

_C.SOLVER = CN()
_C.SOLVER.BATCH_SIZE = 256  # global, over all processes
_C.SOLVER.BASE_LR = 0.03  # for a global batch of 256; scaled with the batch by LR_SCALING
# "linear": lr = BASE_LR x batch / 256 (Goyal et al.; MoCo, BYOL, ...); "sqrt": BASE_LR x
# sqrt(batch / 256), SimCLR's rule for small batches and long runs (App. B.1: 0.075 x sqrt(batch)
# is BASE_LR 1.2 here); "none": BASE_LR at any batch (AMDIM's Adam).
_C.SOLVER.LR_SCALING = "linear"
_C.SOLVER.MOMENTUM = 0.9
# "sgd" | "lars" (pretrain/models/optim.py: trust ratio eta * |w| / |g + wd w|; biases and BN
# parameters excluded from adaptation and weight decay, as SimCLR, BYOL and MoCo v3 do) | "larc"
# (SwAV's apex LARC: eta * |w| / (|g| + wd |w| + eps), every parameter adapted and decayed) |
# "adam" (torch's Adam with ADAM_BETAS, ADAM_EPS and WEIGHT_DECAY as L2 in the gradient: AMDIM).
_C.SOLVER.OPTIMIZER = "sgd"
_C.SOLVER.ADAM_BETAS = (0.9, 0.999)
_C.SOLVER.ADAM_EPS = 1e-8
_C.SOLVER.LARS_TRUST_COEFFICIENT = 0.001  # eta of LARS and LARC (SimCLR's, BYOL's, SwAV's 1e-3)
# False: biases and norm parameters (1-D tensors) get no weight decay under SGD, as DINO's
# release groups them (utils.get_params_groups); LARS never decays them.
_C.SOLVER.DECAY_BIAS_AND_NORM = True
# The predictor's learning rate stays at its start value, unscheduled (SimSiam Table 1, last row).
_C.SOLVER.PREDICTOR_FIXED_LR = False
_C.SOLVER.WEIGHT_DECAY = 1e-4
_C.SOLVER.EPOCHS = 200
_C.SOLVER.MAX_ITER = 0  # > 0 overrides EPOCHS (short runs, tests)
# Epochs at which the lr is multiplied by LR_STEP_GAMMA (InsDis's and MoCo v1's 10x drops;
# AMDIM's 0.2); (): the cosine.
_C.SOLVER.LR_STEPS = ()
_C.SOLVER.LR_STEP_GAMMA = 0.1
_C.SOLVER.WARMUP_EPOCHS = -1.0  # -1: the recipe's rule, 5 epochs when the batch exceeds 256, else 0
# Where the linear warm-up starts (pretrain/engine/schedule.py WARMUP_RULES): "one_based" (step it
# at (it + 1) / W), "from_zero" (it / W: SimCLR's, BYOL's and MoCo v3's releases) or "linspace"
# (it / (W - 1): DINO's and SwAV's np.linspace).
_C.SOLVER.WARMUP_RULE = "one_based"
# "iteration": the schedule moves every step; "epoch": held at each epoch's first value (SimSiam's
# release sets its lr once per epoch).
_C.SOLVER.LR_GRANULARITY = "iteration"
# Where the cosine ends, as a fraction of the peak lr: 0 (MoCo's, SimCLR's, ...), or the floor a
# release decays to (SwAV's final_lr, DINO's min_lr, VISSL's PIRL end_value).
_C.SOLVER.COSINE_FLOOR = 0.0
# Mixed precision on GPU: "bf16" | "fp16" (with a grad scaler, e.g. V100) | "off".
_C.SOLVER.AMP = "bf16"
# bf16 autocast and channels-last on a CPU that computes bf16 natively (AMX / AVX512-BF16;
# pretrain/common/cpu_bf16.py), fp32 with a note on others. Off by default: on such a CPU a run
# resumed from a checkpoint does not end bit for bit where the uninterrupted one does in bf16
# (docs/pretraining.md), and every other guarantee of the trainer holds in fp32. The demo's and
# the CIFAR-10 recipes turn it on.
_C.SOLVER.CPU_AMP = False
_C.SOLVER.COMPILE = False  # torch.compile the model step
_C.SOLVER.CHECKPOINT_PERIOD = 1000  # iterations; a checkpoint is also written at each epoch's end

_C.LOG_PERIOD = 20

# kNN monitor run during pretraining on labelled folders (ImageNet layout), e.g. ImageNet train/val.
_C.EVAL = CN()
_C.EVAL.KNN_PERIOD = 0  # iterations; 0 = off
_C.EVAL.KNN_TRAIN_ROOT = ""
_C.EVAL.KNN_TEST_ROOT = ""
_C.EVAL.KNN_TRAIN_LIMIT = 0  # images; 0 = all
_C.EVAL.KNN_TEST_LIMIT = 0
_C.EVAL.KNN_K = 200
# Each neighbour votes exp(cosine / T): InstDisc's 0.07; MoCo's CIFAR demo 0.1.
_C.EVAL.KNN_TEMPERATURE = 0.07
# What the neighbours are found in: "backbone", the pooled backbone features (what transfers);
# "embedding", the query encoder's normalised head output (MoCo's CIFAR demo monitor).
_C.EVAL.KNN_FEATURES = "backbone"
KNN_FEATURES = ("backbone", "embedding")
# The readouts' evaluation crop (pretrain/evaluation/data.eval_transform): resize the short side to
# DATA.CROP_SIZE / CROP_FRACTION, centre-crop DATA.CROP_SIZE. 0.875: ImageNet's usual view of about
# 77% of the image; 1.0: the whole image, for images already at the crop size (CIFAR at 32 px).
_C.EVAL.CROP_FRACTION = 0.875


def get_cfg() -> CN:
    return _C.clone()


# The supervised baseline (pretrain/supervised.py) and the linear readout
# (pretrain/evaluation/linear.py) share the pretraining config's names: MODEL.* for the network,
# DATA.* for the images, SOLVER.* for the optimisation; DATA.ROOT is the training images in all
# three. Their old flat names are registered as renamed, so a yaml or command line that still
# uses one gets an error naming the new key.
def _readout_nodes(c: CN) -> None:
    """The keys the supervised baseline and the linear readout have in common."""
    c.OUTPUT_DIR = ""
    c.SEED = 0
    c.MODEL = CN()
    c.MODEL.ARCH = "resnet50"
    c.MODEL.WIDTH = 1
    c.DATA = CN()
    c.DATA.ROOT = ""  # labelled class folders (ImageNet layout) to train on
    c.DATA.VAL_ROOT = ""
    c.DATA.LIMIT = 0  # training images, a fixed random subset; 0 = all
    c.DATA.VAL_LIMIT = 0
    c.DATA.CROP_SIZE = 224
    c.DATA.NUM_WORKERS = 8
    c.SOLVER = CN()
    c.SOLVER.BATCH_SIZE = 256
    c.SOLVER.MOMENTUM = 0.9


_RENAMED_READOUT_KEYS = {
    "ARCH": "MODEL.ARCH",
    "WIDTH": "MODEL.WIDTH",
    "STEM": "MODEL.STEM",
    "TRAIN_ROOT": "DATA.ROOT",
    "VAL_ROOT": "DATA.VAL_ROOT",
    "TRAIN_LIMIT": "DATA.LIMIT",
    "VAL_LIMIT": "DATA.VAL_LIMIT",
    "CROP_SIZE": "DATA.CROP_SIZE",
    "CROP_SCALE": "DATA.CROP_SCALE",
    "NUM_WORKERS": "DATA.NUM_WORKERS",
    "BATCH_SIZE": "SOLVER.BATCH_SIZE",
    "BASE_LR": "SOLVER.BASE_LR",
    "LR": "SOLVER.BASE_LR",
    "MOMENTUM": "SOLVER.MOMENTUM",
    "WEIGHT_DECAY": "SOLVER.WEIGHT_DECAY",
    "MAX_ITER": "SOLVER.MAX_ITER",
    "WARMUP_FRACTION": "SOLVER.WARMUP_FRACTION",
    "CHECKPOINT_PERIOD": "SOLVER.CHECKPOINT_PERIOD",
    "EPOCHS": "SOLVER.EPOCHS",
    "MILESTONES": "SOLVER.MILESTONES",
    "GAMMA": "SOLVER.GAMMA",
    "CHECKPOINT": "MODEL.WEIGHTS",
    "ENCODER": "MODEL.ENCODER",
}


def _register_renamed(c: CN) -> CN:
    """Every old flat name whose new key this config has becomes a renamed key (yacs's error)."""
    for old, new in _RENAMED_READOUT_KEYS.items():
        node, *rest = new.split(".")
        if node in c and rest[0] in c[node]:
            c.register_renamed_key(old, new)
    return c


# Supervised pretraining (tools/supervised.py): cross-entropy on labelled folders from random init.
_S = CN()
_readout_nodes(_S)
_S.MODEL.STEM = "imagenet"  # as MODEL.STEM above
_S.DATA.CROP_SCALE = (0.08, 1.0)
_S.SOLVER.MAX_ITER = 1000
_S.SOLVER.BASE_LR = 0.1  # for a batch of 256 (torchvision's ImageNet recipe), scaled linearly
_S.SOLVER.WARMUP_FRACTION = 0.1  # of SOLVER.MAX_ITER, linear from 0; then a cosine to 0
_S.SOLVER.WEIGHT_DECAY = 1e-4
_S.SOLVER.CHECKPOINT_PERIOD = 500
_S.LOG_PERIOD = 50
_register_renamed(_S)

# Linear readout (tools/lincls.py), the reference recipe (MoCo's main_lincls / PyContrast).
_L = CN()
_readout_nodes(_L)
# The backbone's stem (pretrain/models/backbone.py STEMS); "": the checkpoint's own (a pretraining
# checkpoint records it), the ImageNet stem for a random backbone.
_L.MODEL.STEM = ""
_L.MODEL.WEIGHTS = ""  # pretrained weights, any format tools/convert.py reads; "" = random init
_L.MODEL.ENCODER = "query"  # which encoder of a pretraining checkpoint: "query" | "key"
_L.SOLVER.EPOCHS = 60
_L.SOLVER.BASE_LR = 30.0  # for a batch of 256, scaled linearly
_L.SOLVER.MILESTONES = (30, 40, 50)  # epochs at which the lr is multiplied by SOLVER.GAMMA
_L.SOLVER.GAMMA = 0.2
_L.SOLVER.WEIGHT_DECAY = 0.0
_register_renamed(_L)


# Semi-supervised fine-tuning (tools/finetune.py): the whole pretrained backbone and a new linear
# classifier trained on a labelled fraction, SimCLR's protocol (Chen et al. 2020, App. B.5):
# Nesterov momentum 0.9, lr 0.05 x batch / 256 (0.8 at 4096), no warm-up, no weight decay or other
# regularisation, 60 epochs on 1% of the labels (30 on 10%), random crop and flip only; then a
# cosine to 0 (the release's schedule with --warmup_epochs 0); evaluation at the centre crop.
_F = CN()
_readout_nodes(_F)
_F.MODEL.STEM = ""  # as the linear readout's: "" = the checkpoint's own
_F.MODEL.WEIGHTS = ""  # any format tools/convert.py reads; "" = random init (the baseline)
_F.MODEL.ENCODER = "query"
# The labelled fraction of DATA.ROOT: PERCENT of each class's images (at least one), drawn with
# SEED; or SUBSET_FILE, a file of image file names (one per line, e.g. SimCLR's published
# 1percent.txt / 10percent.txt for ImageNet), which then takes the place of PERCENT.
_F.DATA.PERCENT = 1.0
_F.DATA.SUBSET_FILE = ""
_F.DATA.CROP_SCALE = (0.08, 1.0)
_F.SOLVER.BATCH_SIZE = 4096
_F.SOLVER.BASE_LR = 0.05  # for a batch of 256, scaled linearly
_F.SOLVER.NESTEROV = True
_F.SOLVER.WEIGHT_DECAY = 0.0
_F.SOLVER.EPOCHS = 60  # SimCLR: 60 on 1% of the labels, 30 on 10%
_F.SOLVER.CHECKPOINT_PERIOD = 500  # iterations; a checkpoint at every epoch's end too
_F.LOG_PERIOD = 50


def get_finetune_cfg() -> CN:
    return _F.clone()


def load_finetune_cfg(config_file: str = "", opts=()) -> CN:
    """The fine-tuning stage's config, frozen; a fraction in (0, 100] or a subset file."""
    cfg = merge_overrides(get_finetune_cfg(), config_file, opts, stage="finetune")
    if not cfg.DATA.SUBSET_FILE and not 0 < cfg.DATA.PERCENT <= 100:
        raise ConfigError(
            f"DATA.PERCENT {cfg.DATA.PERCENT}: expected a percentage in (0, 100] "
            "(or a DATA.SUBSET_FILE)"
        )
    if cfg.SOLVER.EPOCHS < 1:
        raise ConfigError(f"SOLVER.EPOCHS {cfg.SOLVER.EPOCHS}: need at least one epoch")
    cfg.freeze()
    return cfg


def get_supervised_cfg() -> CN:
    return _S.clone()


def get_lincls_cfg() -> CN:
    return _L.clone()


def _floats_where_floats(cfg: CN, opts: list) -> list:
    """KEY VALUE pairs with a whole number given for a float key written as a float ("1" -> "1.0"
    for DATA.PERCENT or SOLVER.BASE_LR): the config's type check would refuse the int."""
    out = list(opts)
    for i in range(0, len(out) - 1, 2):
        node, value = cfg, out[i + 1]
        for part in str(out[i]).split("."):
            node = node.get(part) if isinstance(node, CN) else None
        if isinstance(node, float) and isinstance(value, str) and value.lstrip("+-").isdigit():
            out[i + 1] = f"{float(value)!r}"
    return out


def merge_overrides(cfg: CN, config_file: str = "", opts=(), stage: str = "") -> CN:
    """cfg <- config file (with _BASE_) <- KEY VALUE overrides, in place; errors (ConfigError)
    name the file and key. Shared by every config of the project's tools (pretraining, readouts,
    supervised). With `stage`, an empty OUTPUT_DIR becomes
    output/<stage>/<config name>_seed<SEED>."""
    if config_file:
        if not os.path.isfile(config_file):
            raise ConfigError(f"config file {config_file}: no such file")
        try:
            cfg.merge_from_file(config_file)
        except FILE_ERRORS as err:
            raise ConfigError(f"config file {config_file}: {file_error_text(err)}") from None
    if opts:
        if len(opts) % 2:
            raise ConfigError(f"overrides must be KEY VALUE pairs, got {list(opts)}")
        try:
            cfg.merge_from_list(_floats_where_floats(cfg, list(opts)))
        except (KeyError, AssertionError, ValueError) as err:
            raise ConfigError(f"command-line override: {err.args[0]}") from None
    if stage and not cfg.OUTPUT_DIR:
        cfg.OUTPUT_DIR = derived_output_dir(stage, config_file, cfg.SEED)
    return cfg


def load_cfg(config_file: str = "", opts: list[str] | None = None) -> CN:
    """Defaults <- config file (with _BASE_) <- KEY VALUE overrides; errors name the file and
    key."""
    cfg = merge_overrides(get_cfg(), config_file, opts or (), stage="pretrain")
    if not cfg.DATA.ROOT:
        cfg.DATA.ROOT = os.environ.get("PRETRAIN_DATA_ROOT", "")
    if cfg.EVAL.KNN_FEATURES not in KNN_FEATURES:
        raise ConfigError(
            f"EVAL.KNN_FEATURES {cfg.EVAL.KNN_FEATURES!r}: expected one of {KNN_FEATURES}"
        )
    if not 0 < cfg.EVAL.CROP_FRACTION <= 1:
        raise ConfigError(
            f"EVAL.CROP_FRACTION {cfg.EVAL.CROP_FRACTION}: expected a value in (0, 1]"
        )
    cfg.freeze()
    return cfg


def load_supervised_cfg(config_file: str = "", opts=()) -> CN:
    """The supervised baseline's config, frozen; at least one iteration."""
    cfg = merge_overrides(get_supervised_cfg(), config_file, opts, stage="supervised")
    if cfg.SOLVER.MAX_ITER < 1:
        raise ConfigError(f"SOLVER.MAX_ITER {cfg.SOLVER.MAX_ITER}: need at least one iteration")
    cfg.freeze()
    return cfg


def load_lincls_cfg(config_file: str = "", opts=()) -> CN:
    """The linear readout's config, frozen."""
    cfg = merge_overrides(get_lincls_cfg(), config_file, opts, stage="lincls")
    cfg.freeze()
    return cfg

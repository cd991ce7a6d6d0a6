"""classanchor: open-set recognition with Class Anchor Clustering (Miller et al., WACV 2021).

Conventions: K known classes; label -1 = unknown; every open-set score is "higher = more unknown".

>>> import torch, classanchor as ca
>>> head = ca.AnchorHead(num_classes=3)                 # anchors 10 * I (Eqs. 3-5)
>>> d = head(torch.tensor([[9.0, 0.5, 0.0]]))           # distances (Eq. 2)
>>> loss = ca.cac_loss(d, torch.tensor([0]))            # Eq. 8
>>> prediction, score = ca.cac_decision(d)              # Eq. 11, Algorithm 1

Submodules beyond this surface: ``classanchor.data`` (readers, splits, on-device loader),
``classanchor.models`` (classifier32, backbone registry), ``classanchor.train``, ``classanchor.evaluate``,
``classanchor.benchmark``, ``classanchor.recipes``, ``classanchor.plots``.
"""

from ._checks import OpenSetInputError
from ._version import __version__
from .detectors import DETECTORS, Detector, NotFittedError, make_detector
from .heads import AnchorHead, anchor_distances, class_anchors, fit_anchors
from .losses import LOSS_VARIANTS, CACLoss, LossWeights, cac_loss, cac_loss_terms
from .methods import Method, get_method
from .metrics import (
    aupr_in,
    aupr_out,
    auroc,
    calibrate_threshold,
    closed_set_accuracy,
    fpr_at_tpr,
    open_set_f1,
    open_set_report,
    openness,
    oscr,
    unknown_confusion,
)
from .models.small_cnn import SmallCNN
from .network import CACNet
from .scores import (
    cac_decision,
    energy_score,
    max_logit_score,
    msp_score,
    rejection_scores,
    softmin_confidences,
)

__all__ = [
    "__version__",
    "OpenSetInputError",
    # the CAC network, loss and test procedure
    "AnchorHead",
    "anchor_distances",
    "class_anchors",
    "fit_anchors",
    "CACNet",
    "SmallCNN",
    "LOSS_VARIANTS",
    "CACLoss",
    "LossWeights",
    "cac_loss",
    "cac_loss_terms",
    "Method",
    "get_method",
    # scores (higher = more unknown) and detectors
    "cac_decision",
    "rejection_scores",
    "softmin_confidences",
    "msp_score",
    "max_logit_score",
    "energy_score",
    "DETECTORS",
    "Detector",
    "NotFittedError",
    "make_detector",
    # metrics
    "auroc",
    "aupr_in",
    "aupr_out",
    "calibrate_threshold",
    "closed_set_accuracy",
    "fpr_at_tpr",
    "open_set_f1",
    "open_set_report",
    "openness",
    "oscr",
    "unknown_confusion",
]

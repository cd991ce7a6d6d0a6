"""classanchor: open-set recognition with Class Anchor Clustering (Miller et al., WACV 2021).

Conventions: K known classes; label -1 = unknown; every open-set score is "higher = more unknown".

>>> import torch, classanchor as ca
>>> head = ca.AnchorHead(num_classes=3)                 # anchors 10 * I (Eqs. 3-5)
>>> d = head(torch.tensor([[9.0, 0.5, 0.0]]))           # distances (Eq. 2)
>>> loss = ca.cac_loss(d, torch.tensor([0]))            # Eq. 8
>>> prediction, score = ca.cac_decision(d)              # Eq. 11, Algorithm 1
"""

from ._checks import OpenSetInputError
from ._version import __version__
from .heads import AnchorHead, anchor_distances, class_anchors, fit_anchors
from .losses import LOSS_VARIANTS, CACLoss, LossWeights, cac_loss, cac_loss_terms
from .methods import Method, get_method
from .models.small_cnn import SmallCNN
from .metrics import auroc, calibrate_threshold, closed_set_accuracy, openness
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
    "AnchorHead",
    "anchor_distances",
    "class_anchors",
    "fit_anchors",
    "LOSS_VARIANTS",
    "CACLoss",
    "LossWeights",
    "cac_loss",
    "cac_loss_terms",
    "Method",
    "get_method",
    "auroc",
    "calibrate_threshold",
    "closed_set_accuracy",
    "openness",
    "CACNet",
    "SmallCNN",
    "cac_decision",
    "energy_score",
    "max_logit_score",
    "msp_score",
    "rejection_scores",
    "softmin_confidences",
]

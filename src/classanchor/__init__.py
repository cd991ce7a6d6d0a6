"""classanchor: open-set recognition with Class Anchor Clustering (Miller et al., WACV 2021).

Conventions: K known classes; label -1 = unknown; every open-set score is "higher = more unknown".

>>> import torch, classanchor as ca
>>> head = ca.AnchorHead(num_classes=3)                 # anchors 10 * I (Eqs. 3-5)
>>> d = head(torch.tensor([[9.0, 0.5, 0.0]]))           # distances (Eq. 2)
>>> loss = ca.cac_loss(d, torch.tensor([0]))            # Eq. 8
>>> prediction, score = ca.cac_decision(d)              # Eq. 11, Algorithm 1

One pipeline: :func:`fit_open_set` turns labelled images + recipe + method + backbone into an
:class:`OpenSetModel` (trained network, Algorithm 1 anchors, calibrated threshold, :class:`Preprocessing`);
``classanchor benchmark``, ``classanchor train`` and ``classanchor demo`` all call it, and
:class:`OpenSetPredictor` runs a saved one on files, folders, zips or arrays.

Submodules beyond this surface: ``classanchor.data`` (sources, decoding, official formats, user folders,
splits, preprocessing, on-device loader), ``classanchor.models`` (classifier32, backbone registry),
``classanchor.train``, ``classanchor.evaluate``, ``classanchor.benchmark``, ``classanchor.studies``,
``classanchor.recipes``, ``classanchor.plots``, ``classanchor.report``.
"""

from ._checks import OpenSetInputError
from ._version import __version__
from .data.preprocess import Preprocessing
from .detectors import DETECTORS, Detector, NotFittedError, make_detector
from .heads import AnchorHead, anchor_distances, class_anchors, fit_anchors
from .losses import LOSS_VARIANTS, CACLoss, LossWeights, cac_loss, cac_loss_terms
from .methods import Method, get_method
from .metrics import (aupr_in, aupr_out, auroc, calibrate_threshold, closed_set_accuracy, fpr_at_tpr, open_set_f1,
                      open_set_report, openness, oscr, unknown_confusion)
from .models.small_cnn import SmallCNN
from .network import CACNet
from .pipeline import ACCEPT_RATE, FitResult, OpenSetModel, fit_open_set
from .predictor import OpenSetPredictor
from .scores import (cac_decision, energy_score, max_logit_score, msp_score, rejection_scores,
                     softmin_confidences)

__all__ = [
    "__version__", "OpenSetInputError",
    # the CAC network, loss and test procedure
    "AnchorHead", "anchor_distances", "class_anchors", "fit_anchors", "CACNet", "SmallCNN", "LOSS_VARIANTS",
    "CACLoss", "LossWeights", "cac_loss", "cac_loss_terms", "Method", "get_method",
    # one pipeline: images -> open-set model -> "class or unknown"
    "ACCEPT_RATE", "FitResult", "OpenSetModel", "OpenSetPredictor", "Preprocessing", "fit_open_set",
    # scores (higher = more unknown) and detectors
    "cac_decision", "rejection_scores", "softmin_confidences", "msp_score", "max_logit_score", "energy_score",
    "DETECTORS", "Detector", "NotFittedError", "make_detector",
    # metrics
    "auroc", "aupr_in", "aupr_out", "calibrate_threshold", "closed_set_accuracy", "fpr_at_tpr", "open_set_f1",
    "open_set_report", "openness", "oscr", "unknown_confusion",
]

"""A tiny backbone registry: a name -> a module mapping images (B, C, S, S) to K logits (B, K).

Every backbone it builds has ``forward(x) -> (B, K)``, ``forward_features(x) -> (B, D)`` and ``classifier``
(the final layer, ``forward(x) == classifier(forward_features(x))``), so an AnchorHead or a detector can work
on its logits or features.

Names:

- ``'classifier32'``: the paper's network (32 px, or 64 px for TinyImageNet); ``dropout=`` (default 0.2).
- ``'resnet9'``: a small residual network for CPUs (the ``fast`` recipes); ``width=`` (default 32).
- ``'mlp'``: flatten -> Linear(C*S*S, hidden) -> ReLU -> Linear(hidden, K), for tiny images and tests;
  ``hidden=`` (default 128).
- ``'torchvision:<name>'``: any ``torchvision.models`` network (e.g. ``torchvision:resnet18``), its last Linear
  replaced by a fresh Linear(., K) and its first 3-channel conv adapted to ``in_channels``;
  ``pretrained=False`` by default (True downloads torchvision's default weights).
- ``'timm:<name>'``: any timm model, created with ``num_classes=K, in_chans=in_channels``;
  ``pretrained=False`` by default.

torchvision and timm are optional (``pip install classanchor[vision]``) and imported only when asked for.

    >>> net = build_backbone("classifier32", num_classes=6, in_channels=1, image_size=32)
    >>> net(torch.zeros(2, 1, 32, 32)).shape
    torch.Size([2, 6])
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
from torch import Tensor, nn

from classanchor.models.classifier32 import Classifier32
from classanchor.models.resnet9 import ResNet9
from classanchor.models.small_cnn import SmallCNN

__all__ = ["MLP", "available_backbones", "build_backbone", "check_input_sizes", "register_backbone"]

_VISION_HINT = "install the optional vision extras with `pip install classanchor[vision]`"


class MLP(nn.Module):
    """flatten -> Linear(C*S*S, hidden) -> ReLU -> Linear(hidden, K): (B, C, S, S) -> (B, K) logits."""

    def __init__(self, num_classes: int, in_channels: int, image_size: int, hidden: int = 128):
        super().__init__()
        self.feature_dim = int(hidden)
        self.body = nn.Sequential(nn.Flatten(1), nn.Linear(in_channels * image_size**2, hidden), nn.ReLU())
        self.classifier = nn.Linear(hidden, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, C, S, S) -> (B, hidden)."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.body(x))


class _HeadSplit(nn.Module):
    """A torchvision network whose last Linear became Identity (``body``) plus a new K-way ``classifier``."""

    def __init__(self, body: nn.Module, classifier: nn.Linear):
        super().__init__()
        self.body = body
        self.classifier = classifier
        self.feature_dim = classifier.in_features

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, D), the input of the original last Linear."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.body(x))


class _TimmBackbone(nn.Module):
    """A timm model with ``forward_features`` returning pooled (B, D) pre-logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.feature_dim = int(getattr(model, "num_features", 0))

    @property
    def classifier(self) -> nn.Module:
        return self.model.get_classifier()

    def forward_features(self, x: Tensor) -> Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def _import_optional(module: str, backbone: str):
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"backbone {backbone!r} needs the package {module!r}: {_VISION_HINT}") from err


def _set_submodule(root: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, attr = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, attr, new)


def _adapt_first_conv(model: nn.Module, in_channels: int) -> None:
    """Give the first 3-channel Conv2d ``in_channels`` inputs (pretrained weights: RGB mean, rescaled)."""
    if in_channels == 3:
        return
    for path, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and m.in_channels == 3:
            new = nn.Conv2d(
                in_channels,
                m.out_channels,
                m.kernel_size,
                m.stride,
                m.padding,
                m.dilation,
                m.groups,
                m.bias is not None,
                m.padding_mode,
            )
            with torch.no_grad():
                mean_w = m.weight.mean(dim=1, keepdim=True)
                new.weight.copy_(mean_w.repeat(1, in_channels, 1, 1) * (3.0 / in_channels))
                if m.bias is not None:
                    new.bias.copy_(m.bias)
            _set_submodule(model, path, new)
            return
    raise ValueError(f"found no 3-channel Conv2d to adapt to {in_channels} input channels")


def _build_torchvision(name: str, num_classes: int, in_channels: int, image_size: int, **kw) -> nn.Module:
    models = _import_optional("torchvision.models", f"torchvision:{name}")
    pretrained = bool(kw.pop("pretrained", False))
    kw.setdefault("weights", "DEFAULT" if pretrained else None)
    model = models.get_model(name, **kw)
    linears = [(path, m) for path, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(
            f"torchvision model {name!r} has no Linear layer to replace with a {num_classes}-way one"
        )
    path, last = linears[-1]
    _set_submodule(model, path, nn.Identity())
    _adapt_first_conv(model, in_channels)
    return _HeadSplit(model, nn.Linear(last.in_features, num_classes))


def _build_timm(name: str, num_classes: int, in_channels: int, image_size: int, **kw) -> nn.Module:
    timm = _import_optional("timm", f"timm:{name}")
    kw.setdefault("pretrained", False)
    return _TimmBackbone(timm.create_model(name, num_classes=num_classes, in_chans=in_channels, **kw))


def _build_classifier32(name: str, num_classes: int, in_channels: int, image_size: int, **kw) -> nn.Module:
    return Classifier32(num_classes, in_channels=in_channels, image_size=image_size, **kw)


def _build_mlp(name: str, num_classes: int, in_channels: int, image_size: int, **kw) -> nn.Module:
    return MLP(num_classes, in_channels, image_size, **kw)


def _build_resnet9(name: str, num_classes: int, in_channels: int, image_size: int, **kw) -> nn.Module:
    return ResNet9(num_classes, in_channels, image_size, **kw)


def _build_small_cnn(name: str, num_classes: int, in_channels: int, image_size: int, **kw) -> nn.Module:
    return SmallCNN(num_classes, in_channels, image_size, **kw)


Factory = Callable[..., nn.Module]
_REGISTRY: dict[str, Factory] = {"classifier32": _build_classifier32, "mlp": _build_mlp, "resnet9": _build_resnet9,
                                 "small_cnn": _build_small_cnn}
_PREFIXES: dict[str, Factory] = {"torchvision": _build_torchvision, "timm": _build_timm}


def register_backbone(name: str, factory: Factory) -> None:
    """Add ``factory(name, num_classes, in_channels, image_size, **kw) -> nn.Module`` under ``name``."""
    if name in _REGISTRY or ":" in name:
        raise ValueError(f"backbone name {name!r} is taken or contains ':'")
    _REGISTRY[name] = factory


def available_backbones() -> list[str]:
    """Registered names plus the 'torchvision:<name>' and 'timm:<name>' prefixes."""
    return sorted(_REGISTRY) + [f"{p}:<name>" for p in sorted(_PREFIXES)]


def build_backbone(
    name: str, num_classes: int, in_channels: int = 3, image_size: int = 32, **kw
) -> nn.Module:
    """Build a backbone: images (B, in_channels, image_size, image_size) -> (B, num_classes) logits."""
    if ":" in name:
        prefix, _, model_name = name.partition(":")
        if prefix not in _PREFIXES or not model_name:
            raise ValueError(f"unknown backbone {name!r}; available: {available_backbones()}")
        return _PREFIXES[prefix](model_name, num_classes, in_channels, image_size, **kw)
    if name not in _REGISTRY:
        raise ValueError(f"unknown backbone {name!r}; available: {available_backbones()}")
    try:
        return _REGISTRY[name](name, num_classes, in_channels, image_size, **kw)
    except TypeError as err:  # an argument the backbone does not take
        raise ValueError(f"backbone {name!r} cannot be built with arguments {kw} ({err}); check --backbone-kwargs "
                         "(names and types).") from None


@torch.no_grad()
def check_input_sizes(net: nn.Module, in_channels: int, sizes, num_classes: int) -> None:
    """Raise ValueError unless ``net`` maps a zero image (1, in_channels, S, S) to (1, num_classes) at every side
    S of ``sizes`` (test-time sides besides the training side need a network with global pooling, e.g.
    resnet9; classifier32 and mlp take their training side only). ``net``'s train/eval mode is kept."""
    was_training, device = net.training, next(net.parameters()).device
    net.eval()
    try:
        for side in sizes:
            try:
                shape = tuple(net(torch.zeros(1, in_channels, side, side, device=device)).shape)
            except RuntimeError as err:
                shape, reason = None, str(err).splitlines()[0]
            else:
                reason = f"it gives logits of shape {shape}"
            if shape != (1, num_classes):
                raise ValueError(f"the network does not take {side} x {side} px inputs ({reason}); test-time "
                                 "sizes besides the training side need a backbone with global pooling such as "
                                 "resnet9: remove the extra test sizes or change the backbone.")
    finally:
        net.train(was_training)

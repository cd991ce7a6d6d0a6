"""Backbones that map an image batch to K logits (see ``classanchor.models.registry``)."""

"""Data: readers of the official dataset formats, open-set splits, and the on-device loader.

Import from the submodules (``classanchor.data.readers``, ``classanchor.data.splits``,
``classanchor.data.loader``, ``classanchor.data.augment``).
"""

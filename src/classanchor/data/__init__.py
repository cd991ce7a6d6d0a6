"""Data: every image file read, decoded and split; open-set splits; the on-device loader.

Import from the submodules. From file to pixels, one path:

- ``sources``: where files come from (folders, zips, folders and files inside zips); ``IMAGE_SUFFIXES``;
- ``decode``: files -> uint8 pixels (modes, EXIF, the resize rule), error policy ``"raise"`` or ``"skip"``;
- ``formats``: the benchmark datasets' official formats, one module each (``load_dataset`` by name), cached;
- ``folders``: your own image folders (one sub-folder per class), split for training;
- ``imageset``: ``ImageSet`` and ``DataError``; ``preprocess``: pixels -> network input;
- ``splits``, ``loader``, ``augment``: open-set splits, the on-device loader and augmentation.
"""

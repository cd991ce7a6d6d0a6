"""Data: every image file read, decoded and split; open-set splits; the on-device loader.

Import from the submodules: ``sources`` (folders, zips, files inside zips) -> ``decode`` (uint8 pixels, error
policy ``"raise"`` or ``"skip"``) -> ``formats`` (the benchmark datasets, cached) or ``folders`` (your own
image folders); ``imageset`` (``ImageSet``, ``DataError``); ``preprocess`` (pixels -> network input);
``splits`` (open-set trials), ``loader`` and ``augment`` (the on-device loader and augmentation).
"""

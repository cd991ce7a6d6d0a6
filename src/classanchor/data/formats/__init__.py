"""One module per official dataset format; each reads its files into an :class:`~classanchor.data.imageset.ImageSet`.

- :mod:`.mnist`: the idx files (``train-images-idx3-ubyte[.gz]``, ...).
- :mod:`.svhn`: the cropped-digits MATLAB files (``train_32x32.mat``, ...).
- :mod:`.cifar`: CIFAR-10 / CIFAR-100, python version (tar.gz or extracted) or an image-folder tree / zip.
- :mod:`.tinyimagenet`: the official ``tiny-imagenet-200`` layout, folder or zip.
- :mod:`.image_folder`: ``<split>/<class name>/<image>`` trees (folder or zip) with a fixed class list.
- :mod:`._common`: argument checks and class-name lookups shared by them.

They live in a sub-package, one file per format, so that reading a format means reading one short module. Image
files are opened with :class:`~classanchor.data.sources.FileSource` and decoded by
:func:`~classanchor.data.decode.decode_files` with ``on_error="raise"``: a bad file in an official dataset stops
the read with a :class:`~classanchor.data.imageset.DataError` naming it. Decoded arrays are cached by
:mod:`classanchor.data.cache`. Import the readers from :mod:`classanchor.data.readers`, the public facade.
"""

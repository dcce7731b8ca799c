"""Datasets: TFDS names, image folders or arrays -> model-ready image batches.

:func:`load` opens a TFDS dataset (or an image folder with one sub-folder per
class), optionally as a class-stratified subset; :func:`from_arrays` wraps
in-memory images. Both return an :class:`ImageDataset`, whose ``labels`` come
without decoding any image and whose ``batches(preprocessing, batch_size)``
stream ``(images [B, S, S, 3] float32, labels [B] int64)`` through a tf.data
pipeline implementing a backbone's
:class:`Preprocessing` (decode, grayscale to RGB,
shorter-side resize or squash, centre crop, normalise).

An image folder may be messy: every format the decoder reads is used
(JPEG, PNG, GIF, BMP, WebP, JPEG XL; nested folders, symbolic links, any
case), other files are reported once, and an unreadable or undecodable image
is an :class:`UnreadableImageError` naming the file, or left out with
``load(folder, skip_unreadable=True)`` (see ``sfda_jax/data/_folder.py``).

A folder or arrays are ONE split; ``test_fraction`` partitions them into
seeded, class-stratified, disjoint ``"train"`` / ``"test"`` parts
(:func:`stratified_split`), and :func:`load_train_test` returns a training
and a test set checked to share no image (:func:`check_disjoint`).

TensorFlow is imported only when a dataset is first used, and is never given a
GPU or TPU (JAX owns them).

Example:
  >>> from sfda_jax import data
  >>> from sfda_jax.backbones.base import Preprocessing
  >>> ds = data.load("fashion_mnist", split="test", num_examples=200)
  >>> ds.fingerprint
  'tfds:fashion_mnist/3.0.1:label=label|split=test|n=200|seed=0'
  >>> preprocessing = Preprocessing(32, 32, (0.5,) * 3, (0.5,) * 3)
  >>> images, labels = next(ds.batches(preprocessing, 64))
  >>> images.shape, images.dtype, labels.shape
  ((64, 32, 32, 3), dtype('float32'), (64,))
"""

from sfda_jax.data._dataset import (DatasetNotPreparedError, ImageDataset,
                                    UnreadableImageError, check_disjoint,
                                    from_arrays, stratified_indices,
                                    stratified_split)
from sfda_jax.data.preprocessing import Preprocessing
from sfda_jax.data._load import (DEFAULT_TEST_FRACTION, check_name, load,
                                 load_train_test, prepare_fashion_mnist)

__all__ = [
    "DEFAULT_TEST_FRACTION",
    "DatasetNotPreparedError",
    "ImageDataset",
    "Preprocessing",
    "UnreadableImageError",
    "check_disjoint",
    "check_name",
    "from_arrays",
    "load",
    "load_train_test",
    "prepare_fashion_mnist",
    "stratified_indices",
    "stratified_split",
]

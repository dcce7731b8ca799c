"""``digits``: scikit-learn's handwritten digits as a named dataset.

1,797 grayscale 8 x 8 images of the digits 0-9 (UCI "Optical Recognition of
Handwritten Digits", test part; bundled with scikit-learn, so it loads
offline), pixel values 0-16, scaled here to 0-255 (``round(v * 255 / 16)``).

Splits: ``"train"`` (1,258 images) and ``"test"`` (539), a fixed
class-stratified partition (:func:`~sfda_jax.data.stratified_split` with test
share 0.3 and seed 0, whatever seed a caller passes: the seed of
:func:`~sfda_jax.data.load` only draws subsets). Record ids name the row of
the full set, so :func:`~sfda_jax.data.check_disjoint` sees through subsets.
"""

from __future__ import annotations

import numpy as np

from sfda_jax.data._dataset import ArraySource, stratified_split

__all__ = ["NAME", "SPLITS", "TEST_FRACTION", "DigitsSource", "load_arrays"]

NAME = "digits"
SPLITS = ("train", "test")
TEST_FRACTION = 0.3
_SPLIT_SEED = 0


def load_arrays() -> tuple[np.ndarray, np.ndarray]:
  """All 1,797 images ``[N, 8, 8]`` uint8 (0-255) and labels ``[N]``."""
  try:
    from sklearn import datasets  # pylint: disable=g-import-not-at-top
  except ModuleNotFoundError as e:
    raise ModuleNotFoundError(
        "the 'digits' dataset ships with scikit-learn: pip install "
        "'scikit-learn>=1.5' (part of sfda_jax's pipeline extra).") from e
  bunch = datasets.load_digits()
  images = np.rint(np.asarray(bunch.images, np.float64) * (255.0 / 16.0))
  return images.astype(np.uint8), np.asarray(bunch.target, np.int64)


class DigitsSource(ArraySource):
  """One split of ``digits`` (see the module docstring)."""

  single_split = False          # fixed train / test splits, not one pool

  def __init__(self, split: str):
    if split not in SPLITS:
      raise ValueError(f"unknown split {split!r} of {NAME!r}; available: "
                       f"{', '.join(SPLITS)}.")
    images, labels = load_arrays()
    train, test = stratified_split(labels, TEST_FRACTION, _SPLIT_SEED)
    rows = train if split == "train" else test
    super().__init__(images[rows], labels[rows], NAME, split)
    self._rows = rows
    self.class_names = [str(k) for k in range(10)]
    self.num_classes = 10
    self.identity = (f"sklearn:{NAME}:test_fraction={TEST_FRACTION}:"
                     f"seed={_SPLIT_SEED}")   # ImageDataset adds the split

  def record_ids(self) -> np.ndarray:
    return np.asarray([f"sklearn:{NAME}#{i}" for i in self._rows])

"""The named offline dataset ``digits`` (scikit-learn's 8 x 8 digits)."""

import numpy as np
import pytest
from sklearn import datasets as sk_datasets

from sfda_jax import data
from sfda_jax.data import _digits
from sfda_jax.data.preprocessing import Preprocessing


def test_splits_are_fixed_stratified_and_disjoint():
  train, test = data.load("digits", "train"), data.load("digits", "test")
  assert (len(train), len(test)) == (1258, 539)
  assert train.class_names == [str(k) for k in range(10)]
  counts = np.bincount(sk_datasets.load_digits().target)
  # Per class round_half_up(0.3 * c_k) test images, the rest train.
  expected_test = np.floor(0.3 * counts + 0.5).astype(int)
  np.testing.assert_array_equal(np.bincount(test.labels), expected_test)
  np.testing.assert_array_equal(np.bincount(train.labels),
                                counts - expected_test)
  ids_train, ids_test = set(train.image_ids), set(test.image_ids)
  assert not ids_train & ids_test
  assert len(ids_train | ids_test) == 1797
  # The partition does not move with the subset seed.
  again = data.load("digits", "test", seed=5)
  assert set(again.image_ids) == ids_test


def test_pixels_are_the_scaled_sklearn_images():
  images, labels = _digits.load_arrays()
  bunch = sk_datasets.load_digits()
  assert images.shape == (1797, 8, 8) and images.dtype == np.uint8
  np.testing.assert_array_equal(labels, bunch.target)
  np.testing.assert_array_equal(images, np.rint(bunch.images * 255 / 16))
  ds = data.load("digits", "train", num_examples=20)
  x, y = next(ds.batches(Preprocessing(8, 8, (0.0,) * 3, (1.0,) * 3), 20))
  assert x.shape == (20, 8, 8, 3)
  np.testing.assert_allclose(x[..., 0], x[..., 2])      # gray -> RGB
  rows = [int(i.rsplit("#", 1)[1]) for i in ds.image_ids]  # full-set rows
  np.testing.assert_allclose(x[..., 0] * 255, images[rows], atol=1e-3)
  np.testing.assert_array_equal(np.bincount(y), [2] * 10)


def test_load_train_test_and_subsets():
  train, test, split = data.load_train_test("digits", num_examples=600,
                                            test_examples=300)
  assert split["method"] == "named_splits" and split["shared_images"] == 0
  assert (len(train), len(test)) == (600, 300)
  assert np.bincount(train.labels).min() >= 58
  assert train.fingerprint.startswith("sklearn:digits:")
  assert train.fingerprint != test.fingerprint


def test_bad_requests():
  with pytest.raises(ValueError, match="unknown split 'validation' of "
                                       "'digits'; available: train, test"):
    data.load("digits", "validation")
  with pytest.raises(ValueError, match="fixed 'train' and 'test' splits"):
    data.load("digits", "train", test_fraction=0.2)
  with pytest.raises(ValueError, match="train and test splits overlap"):
    data.load_train_test("digits", test_split="train")
  with pytest.raises(ValueError, match="has only 539 examples.*on the "
                     "command line --num_examples=0"):
    data.load("digits", "test", num_examples=600)

"""Lazy, accelerator-free import of TensorFlow and TensorFlow Datasets.

TensorFlow only feeds the input pipeline; JAX owns the accelerators. Importing
this module imports TensorFlow (so the rest of :mod:`sfda_jax.data` imports it
only when a dataset is actually used), first silencing TensorFlow's C++ log
spam unless the user already chose a level, then hiding every GPU and TPU from
TensorFlow before it can claim accelerator memory.
"""

from __future__ import annotations

import os

# Must precede the first TensorFlow import to take effect; a user's own
# setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import logging  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

__all__ = ["tf", "tfds"]


def _hide_accelerators() -> None:
  """Makes every GPU/TPU invisible to TensorFlow (JAX keeps them)."""
  for device_type in ("GPU", "TPU"):
    try:
      tf.config.set_visible_devices([], device_type)
    except ValueError:
      continue  # No such device type in this TensorFlow build.
    except RuntimeError as e:
      # The TF runtime was initialised before this import (a TF op ran).
      if tf.config.get_visible_devices(device_type):
        logging.warning(
            "Could not hide %s devices from TensorFlow (%s); TensorFlow may "
            "take accelerator memory that JAX needs. Import sfda_jax.data "
            "before running any TensorFlow op.", device_type, e)


_hide_accelerators()

import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

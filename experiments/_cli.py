"""What every entry point shares: clean one-line errors for user mistakes,
and quiet defaults.

Quiet by default: absl logs WARNING and above (``--verbosity=0`` or
``-v 0`` shows INFO, ``-v 1`` debug); TensorFlow's C++ INFO logs are off
(``TF_CPP_MIN_LOG_LEVEL=1`` unless set), and so is its oneDNN notice, which
ignores that level: ``TF_ENABLE_ONEDNN_OPTS=0`` unless set. TensorFlow only
decodes and resizes images here, which oneDNN does not touch: the pixels fed
to the models are bit-identical either way (BUILD_NOTES.md, "Quiet entry
points"). And when stderr is not a terminal (a piped
log) progress bars redraw at most every 30 s instead of on every batch
(``TQDM_MININTERVAL``, unless set). These variables are set when this module
is imported, so entry points import it before TensorFlow and tqdm.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
if not sys.stderr.isatty():      # read when tqdm is imported: set it first
  os.environ.setdefault("TQDM_MININTERVAL", "30")

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import logging  # pylint: disable=g-import-not-at-top,wrong-import-position


def define_skip_unreadable() -> None:
  """Defines ``--skip_unreadable`` (the entry points that load image
  folders share its meaning: ``sfda_jax.data.load(skip_unreadable=...)``)."""
  flags.DEFINE_bool(
      "skip_unreadable", False, "Image folders: leave out images that cannot "
      "be read or decoded (each is logged with its reason, then the count; "
      "every image is decoded once up front to find them) instead of "
      "stopping at the first with an error naming it.")


def _quiet_defaults() -> None:
  """After flag parsing: WARNING unless --verbosity / -v was given (absl's
  app.run otherwise logs INFO)."""
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)


def run(main: Callable[[list[str]], None]) -> None:
  """``app.run(main)``, but bad input ends in one ``error: ...`` line.

  ValueError (bad flags, names, shapes, ground truth), OSError (missing
  files or datasets, unreachable hub, unwritable output) and absl's
  UsageError are user-facing: their message says what to do, so the
  traceback is only logged at debug verbosity (``--verbosity=1``) and no
  usage text is dumped. Ctrl-C prints how far the work got (e.g.
  "interrupted at 672/1500 images of ...; 512 are checkpointed, rerun the
  same command to resume") and exits 130. Any other exception is a bug and keeps its
  traceback.
  """

  def guarded(argv):
    _quiet_defaults()
    try:
      main(argv)
    except (ValueError, OSError, app.UsageError) as e:
      logging.debug("".join(traceback.format_exception(e)))
      sys.exit(f"error: {e}")
    except KeyboardInterrupt as e:       # Ctrl-C: what was kept, no traceback
      logging.debug("".join(traceback.format_exception(e)))
      print(f"\n{e}" if str(e) else "\ninterrupted (finished, atomically "
            "written results are kept; rerun the same command to resume)",
            file=sys.stderr)
      sys.exit(130)

  app.run(guarded)

"""What every entry point shares: clean one-line errors for user mistakes."""

from __future__ import annotations

import sys
import traceback
from typing import Callable

from absl import app
from absl import logging


def run(main: Callable[[list[str]], None]) -> None:
  """``app.run(main)``, but bad input ends in one ``error: ...`` line.

  ValueError (bad flags, names, shapes, ground truth) and OSError (missing
  files or datasets, unreachable hub, unwritable output) are user-facing:
  their message says what to do, so the traceback is only logged at debug
  verbosity (``--verbosity=1``). Any other exception is a bug and keeps its
  traceback.
  """

  def guarded(argv):
    try:
      main(argv)
    except (ValueError, OSError) as e:
      logging.debug("".join(traceback.format_exception(e)))
      sys.exit(f"error: {e}")

  app.run(guarded)

"""Argument checks shared by the pipeline (one rule, one message each)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["positive_int"]


def positive_int(value: Any, name: str, *, none_means: str | None = None
                 ) -> int | None:
  """``value`` as an int when it is a positive integer (not a bool).

  Args:
    value: the argument.
    name: its name, for the message.
    none_means: when given, ``None`` is accepted and the message says what it
      means (e.g. ``"the whole split"``).

  Raises:
    ValueError: ``"<name> must be a positive int[ or None (<none_means>)],
      got <value!r>."``
  """
  if value is None and none_means is not None:
    return None
  if isinstance(value, bool) or not isinstance(
      value, (int, np.integer)) or value < 1:
    alt = f" or None ({none_means})" if none_means is not None else ""
    raise ValueError(f"{name} must be a positive int{alt}, got {value!r}.")
  return int(value)

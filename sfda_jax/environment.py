"""The one record of where a result was computed: versions and hardware.

Every results file (``experiments.rank``'s results.json, the fine-tune
ground truth, the benchmark) stores :func:`record` under the same keys, so
two results can be compared field by field.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys

__all__ = ["cpu_model", "record"]

#: Packages whose versions every record holds (when installed).
_CORE = ("sfda_jax", "jax", "jaxlib", "numpy", "scipy")


def _version(name: str) -> str | None:
  module = sys.modules.get(name)
  if module is None:
    try:
      module = importlib.import_module(name)
    except ImportError:
      return None
  return str(getattr(module, "__version__", "unknown"))


def cpu_model() -> str:
  """The CPU's model name (``/proc/cpuinfo``), else the platform's."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def record(packages: tuple[str, ...] = ()) -> dict[str, object]:
  """``{python, machine, cpu, cpus, backend, device, <package>: version}``.

  Args:
    packages: versions to add to the core ones (sfda_jax, jax, jaxlib,
      numpy, scipy); one that is not installed is left out.

  Returns:
    A JSON-ready dict; ``device`` is the first JAX device's kind.
  """
  import jax  # pylint: disable=g-import-not-at-top
  out: dict[str, object] = {
      "python": platform.python_version(), "machine": platform.machine(),
      "cpu": cpu_model(), "cpus": os.cpu_count(), "backend": jax.default_backend(),
      "device": str(jax.devices()[0].device_kind)}
  for name in (*_CORE, *packages):
    version = _version(name)
    if version is not None:
      out[name] = version
  return out

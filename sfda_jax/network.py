"""The one network probe: can this machine open a TCP connection to a host?

Used before anything that would otherwise hang offline (a TFDS download, a
HuggingFace hub fetch). A probe tries every target at once, through the HTTPS
proxy of the environment if one is set (an HTTP ``CONNECT``), with a
deadline that also bounds name resolution.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.parse

__all__ = ["PROBE_TIMEOUT_S", "proxy_target", "reachable"]

PROBE_TIMEOUT_S = 3.0
_SCHEME_PORTS = {"http": 80, "https": 443}


def proxy_target() -> tuple[str, int] | None:
  """``(host, port)`` of the HTTPS proxy configured in the environment
  (``HTTPS_PROXY``, ``ALL_PROXY``, either case). A proxy URL without a port
  uses its scheme's default port, as the HTTP clients that download do."""
  for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
    value = os.environ.get(var)
    if value:
      parsed = urllib.parse.urlsplit(value if "://" in value
                                     else "http://" + value)
      if parsed.hostname:
        return parsed.hostname, parsed.port or _SCHEME_PORTS.get(
            parsed.scheme, 80)
  return None


def _connect(host: str, port: int, timeout: float,
             proxy: tuple[str, int] | None) -> None:
  """Opens a TCP connection to ``host:port`` (through an HTTP proxy's CONNECT
  when ``proxy`` is given); raises OSError when that fails."""
  if proxy is None:
    socket.create_connection((host, port), timeout=timeout).close()
    return
  with socket.create_connection(proxy, timeout=timeout) as sock:
    sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}"
                 "\r\n\r\n".encode())
    status = sock.recv(64).split(b"\r\n", 1)[0].decode("latin-1")
    parts = status.split()
    if len(parts) < 2 or parts[1] != "200":
      raise OSError(f"proxy {proxy[0]}:{proxy[1]} refused CONNECT: {status!r}")


def reachable(targets: list[tuple[str, int]],
              timeout: float = PROBE_TIMEOUT_S) -> tuple[bool, str]:
  """Probes ``targets`` ``[(host, port)]`` in at most ``timeout`` seconds.

  Returns:
    ``(reachable, detail)``: reachable when any target answered; ``detail``
    names what was tried (and why each failed).
  """
  proxy = proxy_target()
  reached = threading.Event()
  errors: dict[str, str] = {}

  def probe(host: str, port: int) -> None:
    try:
      _connect(host, port, timeout, proxy)
      reached.set()
    except OSError as e:
      errors[f"{host}:{port}"] = f"{type(e).__name__}: {e}"

  threads = [threading.Thread(target=probe, args=t, daemon=True)
             for t in targets]
  for thread in threads:
    thread.start()
  # Daemon threads: a name resolution stuck past the deadline is abandoned.
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline and not reached.is_set():
    if not any(thread.is_alive() for thread in threads):
      break
    reached.wait(0.05)
  names = ", ".join(f"{h}:{p}" for h, p in targets)
  if proxy:
    names += f" (through proxy {proxy[0]}:{proxy[1]})"
  if reached.is_set():
    return True, f"reached one of {names}"
  return False, (f"no connection to {names} within {timeout:g} s"
                 + (f" ({'; '.join(errors.values())})" if errors else ""))

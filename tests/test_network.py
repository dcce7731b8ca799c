"""The one network probe: direct, through a proxy's CONNECT, deadlines."""

import socket
import threading

from sfda_jax import network


def _server(reply=None):
  """A local listener; with ``reply``, it answers each connection's first
  read with it (an HTTP proxy)."""
  sock = socket.socket()
  sock.bind(("127.0.0.1", 0))
  sock.listen(4)

  def serve():
    while True:
      try:
        conn, _ = sock.accept()
      except OSError:
        return
      with conn:
        if reply is not None:
          conn.recv(256)
          conn.sendall(reply)

  threading.Thread(target=serve, daemon=True).start()
  return sock, sock.getsockname()[1]


def _clear_proxies(monkeypatch):
  for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
    monkeypatch.delenv(var, raising=False)


def test_proxy_target_default_ports(monkeypatch):
  _clear_proxies(monkeypatch)
  assert network.proxy_target() is None
  monkeypatch.setenv("https_proxy", "http://proxy.example")
  assert network.proxy_target() == ("proxy.example", 80)
  monkeypatch.setenv("https_proxy", "proxy.example:3128")
  assert network.proxy_target() == ("proxy.example", 3128)
  monkeypatch.delenv("https_proxy")
  monkeypatch.setenv("ALL_PROXY", "https://p.example")
  assert network.proxy_target() == ("p.example", 443)


def test_reachable_direct_and_closed(monkeypatch):
  _clear_proxies(monkeypatch)
  sock, port = _server()
  ok, detail = network.reachable([("127.0.0.1", port)], timeout=2)
  assert ok and f"127.0.0.1:{port}" in detail
  sock.close()
  closed = socket.socket()
  closed.bind(("127.0.0.1", 0))
  port = closed.getsockname()[1]
  closed.close()                  # nothing listens there: refused
  ok, detail = network.reachable([("127.0.0.1", port)], timeout=2)
  assert not ok and "no connection to" in detail
  assert "ConnectionRefusedError" in detail


def test_reachable_through_proxy_connect(monkeypatch):
  _clear_proxies(monkeypatch)
  good, good_port = _server(b"HTTP/1.1 200 Connection established\r\n\r\n")
  monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{good_port}")
  ok, detail = network.reachable([("example.invalid", 443)], timeout=2)
  assert ok and f"through proxy 127.0.0.1:{good_port}" in detail
  bad, bad_port = _server(b"HTTP/1.1 403 Forbidden\r\n\r\n")
  monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{bad_port}")
  ok, detail = network.reachable([("example.invalid", 443)], timeout=2)
  assert not ok and "refused CONNECT" in detail
  good.close()
  bad.close()

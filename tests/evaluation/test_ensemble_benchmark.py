"""The ensemble benchmark (issue 13, item 6): sets chosen three ways, each
probed once, resumable, refused under other settings."""

import json

import numpy as np
import pytest

from sfda_jax.evaluation import ensemble_benchmark as eb

PROBE = {"steps": 30, "seeds": (0, 1), "learning_rates": (0.03,)}


def _zoo(n, seed):
  rng = np.random.default_rng(seed)
  y = np.repeat(np.arange(3), n // 3)
  mk = lambda s, d: rng.normal(size=(n, d)) + s * np.eye(d)[y]  # noqa: E731
  return {"good": mk(3.0, 5), "copy": None, "other": mk(2.0, 4),
          "noise": mk(0.0, 6)}, y


def _data():
  tr, ytr = _zoo(90, 0)
  te, yte = _zoo(60, 1)
  tr["copy"], te["copy"] = tr["good"] * 1.01, te["good"] * 1.01
  return tr, ytr, te, yte


def test_probe_learns_separable_features():
  tr, ytr, te, yte = _data()
  good = eb.probe_accuracy((tr["good"], ytr), (te["good"], yte), 3, PROBE)
  noise = eb.probe_accuracy((tr["noise"], ytr), (te["noise"], yte), 3, PROBE)
  assert good["mean"] > 0.8 and noise["mean"] < 0.6
  assert set(good["seeds"]) == {"0", "1"} and good["std"] is not None


def test_run_writes_every_set_and_resumes(tmp_path, monkeypatch):
  tr, ytr, te, yte = _data()
  out = str(tmp_path / "t.json")
  doc = eb.run("toy", tr, ytr, te, yte, ks=(2,), random_sets=3, output=out,
               probe=PROBE)
  sets = doc["sets"]["2"]
  assert set(sets) == {"selection", "top_k", "random_0", "random_1",
                       "random_2"}
  assert all(len(v["models"]) == 2 for v in sets.values())
  best_two = sorted(doc["sfda"], key=lambda m: -doc["sfda"][m])[:2]
  assert set(sets["top_k"]["models"]) == set(best_two)
  assert sets["selection"]["models"][0] == best_two[0]
  on_disk = json.load(open(out))
  assert on_disk["probed"] == doc["probed"]
  calls = []
  monkeypatch.setattr(eb, "probe_accuracy",
                      lambda *a, **k: calls.append(a) or {"mean": 0.0})
  again = eb.run("toy", tr, ytr, te, yte, ks=(2,), random_sets=3, output=out,
                 probe=PROBE)
  assert not calls and again["sets"] == doc["sets"]     # nothing re-probed
  table = eb.summary_table([again])
  assert table.splitlines()[1].startswith("toy")
  with pytest.raises(ValueError, match="other settings"):
    eb.run("toy", tr, ytr, te, yte, ks=(3,), random_sets=3, output=out,
           probe=PROBE)


def test_bad_sizes_and_labels():
  with pytest.raises(ValueError, match="outside"):
    eb.check_ks([1, 2], 4)
  tr, ytr, te, yte = _data()
  with pytest.raises(ValueError, match="different classes"):
    eb.run("toy", tr, ytr, te, yte + 5, ks=(2,), probe=PROBE)

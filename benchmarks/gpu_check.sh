#!/usr/bin/env bash
# Everything minigan checks and times on an NVIDIA GPU, in one go (about 4 minutes on an H200;
# the parts' own time limits add up to about 10).
#
#   bash benchmarks/gpu_check.sh OUTDIR
#
# 1. the CUDA suite (tests/cuda) on the GPU: every @cuda.jit kernel against its CPU twin, on
#    NumPy and on CuPy arrays, the functional ops, optimizers and a training step against the CPU;
# 2. benchmarks/kernels_cuda.py: the elementwise kernels against the device's copy bandwidth;
# 3. benchmarks/step.py --device cuda --compare torch: a training step of every model against
#    PyTorch's on the same GPU, benchmarks/launch_cuda.py's cost of a kernel launch (numba's
#    dispatcher against minigan's direct path, alone and in a step), and profile_step.py's
#    split of a step into the GPU's wait and the host's own work;
# 4. a short doodles run on the GPU (examples/doodles.py --device cuda), when
#    $MINIGAN_DATA/quickdraw/smiley_face.npy is there;
# 5. the gradient checks, layers and kernels with MINIGAN_DEVICE=cuda (every OpTest on the GPU too).
#
# Needs CuPy and numba-cuda (pip install '.[cuda13]' or '[cuda12]'), PyTorch for step 4, pytest
# and hypothesis. Each part has its own time limit, so one slow part cannot eat the others'.
# Logs go to OUTDIR: cuda_tests.log, gpu_gradcheck.log, kernels_cuda.txt, step_cuda.jsonl,
# launch_cuda.jsonl, profile_cuda.txt, doodles_gpu.log and the run's last sample grid.
set -uo pipefail
out=${1:-gpu_check}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
unset NUMBA_ENABLE_CUDASIM
cd "$(dirname "$0")/.."
# several pytest workers when pytest-xdist is there: the kernels' first compilations are CPU work
xdist=$($py -c "import xdist" 2>/dev/null && echo "-n ${GPU_CHECK_WORKERS:-8}")

# GPU_CHECK_PARTS="1 5" runs only those parts (default: all)
part() { echo; echo "== $1 ($(date +%T))"; }
want() { [ -z "${GPU_CHECK_PARTS:-}" ] || [[ " $GPU_CHECK_PARTS " == *" $1 "* ]]; }
limit() { local s=$1; shift; timeout --kill-after=10 "$s" "$@"; echo "-- exit $? after $SECONDS s"; }

part "device"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm \
    --format=csv 2>&1 || echo "nvidia-smi failed"
$py - <<'EOF'
import platform, numpy, numba
print("python", platform.python_version(), "numpy", numpy.__version__, "numba", numba.__version__)
for name in ("cupy", "numba_cuda", "torch"):
    try:
        m = __import__(name)
        print(name, getattr(m, "__version__", "?"))
    except Exception as e:  # noqa: BLE001
        print(name, "missing:", e)
from minigan import backend
from minigan.kernels import _cuda
print("cuda_available", backend.cuda_available(), backend.cuda_unavailable_reason(),
      "| numba kernels:", _cuda.missing_reason() or "ok")
EOF

if want 1; then
    part "1. the CUDA suite on the GPU"
    limit 140 $py -m pytest tests/cuda $xdist -v -p no:cacheprovider 2>&1 | tee "$out/cuda_tests.log" \
        | grep -E "FAILED|ERROR|passed|failed|exit" | tail -30
fi

if want 2; then
    part "2. elementwise kernels against the copy bandwidth"
    limit 30 $py benchmarks/kernels_cuda.py --size 67108864 2>&1 | tee "$out/kernels_cuda.txt"
fi

if want 3; then
    part "3. a training step against PyTorch's, on the GPU"
    limit 90 $py benchmarks/step.py --device cuda --compare torch --steps 20 --warmup 5 2>&1 \
        | tee "$out/step_cuda.jsonl"
    # the host's cost of a kernel launch, numba's dispatcher against the direct path
    limit 60 $py benchmarks/launch_cuda.py --steps 20 2>&1 | tee "$out/launch_cuda.jsonl"
    for m in "doodles 32" "dcgan64 64"; do  # the GPU's wait against the host's own work
        set -- $m
        limit 40 $py benchmarks/profile_step.py --device cuda --model "$1" --batch "$2" \
            --steps 20 --top 30 2>&1 | tee -a "$out/profile_cuda.txt"
    done
fi

if want 4; then
    part "4. doodles on the GPU"
    if [ -f "${MINIGAN_DATA:-/nonexistent}/quickdraw/smiley_face.npy" ]; then
        run=$(mktemp -d)/doodles
        limit 60 $py examples/doodles.py --device cuda --epochs "${GPU_CHECK_EPOCHS:-10}" \
            --out "$run" 2>&1 | tr '\r' '\n' | grep -v "step/s, " | tee "$out/doodles_gpu.log" | tail -15
        last=$(ls "$run"/samples/epoch_*.png 2>/dev/null | tail -1)
        [ -n "$last" ] && cp "$last" "$out/doodles_gpu_$(basename "$last")"
        [ -f "$run/metrics.jsonl" ] && tail -3 "$run/metrics.jsonl"
    else
        echo "skipped: no \$MINIGAN_DATA/quickdraw/smiley_face.npy"
    fi
fi

if want 5; then
    part "5. gradient checks, layers and kernels with MINIGAN_DEVICE=cuda"
    MINIGAN_DEVICE=cuda limit 150 $py -m pytest $xdist tests/test_gradcheck.py tests/nn tests/functional \
        tests/kernels tests/test_optim.py -v -p no:cacheprovider 2>&1 \
        | tee "$out/gpu_gradcheck.log" | grep -E "FAILED|ERROR|passed|failed|exit" | tail -30
fi

part "done"

#!/usr/bin/env bash
# One lent-GPU session, prepared so it fits one call (see README, "GPU"): the CUDA tests (the
# objective, the counter-based noise against the CPU's, the CUDA graphs against the eager loop),
# then llc_speed.py on the example MLP (26 to 26 × 616 = 16,016 chains) with the step as CUDA graphs
# and without (GROKSCOPE_CUDA_GRAPHS=0), the pizza transformer and the nanda transformer
# (REFERENCE §10), and `grokscope llc` end to end on the GPU.
#
# Needs, beside the working tree: the runs it samples (runs/bench-example, runs/bench-pizza,
# runs/nanda, sampled as they stand) and, where the machine lacks pydantic, its wheels in .whl/
# (python -m pip download --no-deps --only-binary=:all: --python-version 3.12 ... -d .whl
# pydantic pydantic_core annotated-types typing-inspection typing_extensions).
# Writes its logs under $OUT (default runs/gpu-session).
set -u
OUT=${OUT:-runs/gpu-session}
mkdir -p "$OUT"
if ! python3 -c "import pydantic" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"

python3 -m pytest -q -p no:cacheprovider tests/test_llc_estimator.py tests/test_noise.py tests/test_graphed.py -k cuda 2>&1 \
    | tail -3 | tee "$OUT/cuda_test.txt"

bench() { # name, then llc_speed.py's arguments
    local name=$1; shift
    echo "== $name"
    timeout 150 python3 benchmarks/llc_speed.py --device cuda --as-is --devinterp-checkpoints 0 "$@" 2>&1 \
        | grep -v "^\s*$" | tee "$OUT/$name.txt"
}
bench example --run runs/bench-example --chains 1 4 16 40 160 616
GROKSCOPE_CUDA_GRAPHS=0 bench example-eager --run runs/bench-example --chains 1 4 16
bench pizza --run runs/bench-pizza --chains 1 4 16 40 --epsilon 1e-6
bench nanda --run runs/nanda --chains 1 4 16 --epsilon 1e-6

echo "== grokscope llc, end to end (new process), example run, 4 chains, workload settings"
start=$(date +%s.%N)
python3 -m grokscope.cli llc runs/bench-example --device cuda --chains 4 --epsilon 1e-3 --gamma 5 --steps 3000 \
    --burn-in 750 --batch-size 64 --checkpoints all > "$OUT/cli.txt" 2>&1
echo "exit $?, $(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')") s" | tee -a "$OUT/cli.txt"

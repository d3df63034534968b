#!/usr/bin/env bash
# One lent-GPU call for scripts/transformer_long.py: one process per entry of NETWORKS (default
# "pizza:0,1 clock:0": the pizza seeds batched in one), each timing its own chains to end BUDGET
# seconds (default 470) after this script starts, then the table. Needs the trained runs carried
# (runs/setting-PRESET-SEED; scripts/transformer_setting.py trains them) and, where
# the machine lacks pydantic and the rest, their wheels in .whl/ (as benchmarks/gpu_checks.sh).
# Writes under $OUT (default runs/long). DEVICE=cpu tries the whole call on a CPU.
set -u
T0=$(date +%s)
OUT=${OUT:-runs/long}
BUDGET=${BUDGET:-470}
mkdir -p "$OUT"
if ! python3 -c "import pydantic, safetensors, yaml, tqdm" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
DEVICE=${DEVICE:-cuda}
if [ "$DEVICE" = cuda ]; then
    { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
      python3 -c "import sys, torch, grokscope.llc; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())"
    } > "$OUT/gpu.txt" 2>&1 || { cat "$OUT/gpu.txt"; exit 1; }
    timeout 60 python3 -m pytest -q -p no:cacheprovider tests/test_graphed.py -k cuda 2>&1 | tail -2 > "$OUT/cuda_test.txt"
fi
for net in ${NETWORKS:-pizza:0,1 clock:0}; do
    python3 scripts/transformer_long.py --network "$net" --device "$DEVICE" --until $((T0 + BUDGET)) --out "$OUT" \
        > "$OUT/${net//[:,]/-}.log" 2>&1 &
done
wait
cat "$OUT"/*.txt "$OUT"/*.log
python3 scripts/transformer_long.py --table --out "$OUT"

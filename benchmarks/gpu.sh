#!/usr/bin/env bash
# Every GPU check and benchmark in one call on a CUDA machine with no internet; logs go to $OUT (or /tmp/gpu-out).
#
#   bash benchmarks/gpu.sh                 # all steps
#   bash benchmarks/gpu.sh sampling job    # only the named steps (tests bench sampling sampling-large released
#                                          # inception job demo suite)
#
# Needs an ignored folder .gpu/ in this repository's root, made on a machine with the packages:
#   .gpu/whl/        wheels of the dependencies the GPU image lacks (omegaconf, antlr4-python3-runtime,
#                    webdataset, braceexpand: `pip download --no-deps ...`)
#   .gpu/inception-fp16.pt   the FID Inception as a half-precision state dict (the full file is too big to carry)
#   .gpu/fmnist/     Fashion-MNIST .gz files (the test split also serves as the training split, for timing)
set -u
O=${OUT:-/tmp/gpu-out}
mkdir -p "$O"
STEPS=${*:-tests bench sampling sampling-large released inception job demo suite}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl \
  || exit 1
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 ROBUSTOK_DATA=$PWD/.gpu/fmnist ROBUSTOK_CACHE=/tmp/robustok-cache
export ROBUSTOK_INCEPTION=$PWD/.gpu/inception-fp16.pt
rt() { python3 -m robustok "$@"; }
want() { [[ " $STEPS " == *" $1 "* ]] && echo && echo "=== $1: $2 ($(date +%T))"; }
timed() { local t=$(date +%s); "$@"; echo "wall: $(( $(date +%s) - t )) s"; }

echo "=== device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$O/device.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$O/device.txt"

want tests "the GPU tests" && timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tail -5

want bench "tokenizer training throughput" &&
  timeout 150 python3 benchmarks/train_tokenizer.py --steps 20 2>&1 | tee "$O/train_tokenizer.txt"

want sampling "AR sampling, RAR-B size, 256 tokens, batch 64, no cache vs KV cache vs static decoder (CUDA graphs)" &&
  timeout 240 python3 benchmarks/sampling.py --preset rar-b --grid 16 --vocab 4096 --batch-sizes 64 --repeats 1 \
    --device cuda --dtype bfloat16 2>&1 | tee "$O/sampling.txt"

want sampling-large "AR sampling, RAR-B size, 256 tokens, batch 256, KV cache vs static decoder (CUDA graphs)" &&
  timeout 240 python3 benchmarks/sampling.py --preset rar-b --grid 16 --vocab 4096 --batch-sizes 256 --repeats 1 \
    --device cuda --dtype bfloat16 --cache-only 2>&1 | tee "$O/sampling-large.txt"

want released "released generators: RAR-L size (converted-RAR module), static decoder, batch 64, bf16" &&
  timeout 240 python3 benchmarks/released_generators.py --speed rar-l --batch 64 --dtype bfloat16 --repeats 2 \
    2>&1 | tee "$O/released.txt"

want inception "FID Inception features" &&
  timeout 90 python3 benchmarks/fid_features.py --device cuda --num-images 2048 --batch-size 256 \
    --weights "$ROBUSTOK_INCEPTION" 2>&1 | tee "$O/fid_features.txt"

want job "train-tokenizer (fmnist-robust, 300 steps) + eval-tokenizer, Inception features, 2000 images" && {
  timed timeout 150 bash -c "$(declare -f rt); rt train-tokenizer configs/tokenizer/fmnist-robust.yaml \
    train.steps=300 run.dir=/tmp/tok run.progress=false run.sample_every=0 2>&1 | tail -2"
  timed timeout 150 bash -c "$(declare -f rt); rt eval-tokenizer /tmp/tok/tokenizer --features inception \
    --num-images 2000 --batch-size 250 --json $O/eval.json 2>&1 | tail -12"; } 2>&1 | tee "$O/job.txt"

want demo "demo --quick" && timed timeout 200 bash -c "$(declare -f rt); rt demo --quick --out /tmp/quick 2>&1 | tail -2"

want suite "the whole test suite on the GPU machine" &&
  timeout 240 python3 -m pytest -q -p no:cacheprovider tests 2>&1 | tail -20 | tee "$O/suite.txt"
echo "=== done ($(date +%T))"

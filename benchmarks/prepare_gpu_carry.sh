#!/usr/bin/env bash
# Make the folder benchmarks/gpu_session.sh needs on a GPU machine without network (default .devcarry,
# which .git/info/exclude should ignore): Fashion-MNIST, the trained models, and pure-Python wheels of
# robustbench (and what it imports) and torchattacks for the machine's Python (3.12 there).
# Run from the repository root, after `sparsebench run` has trained and cached the models in $CACHE.
set -euo pipefail
CARRY=${CARRY:-.devcarry}
CACHE=${CACHE:-${SPARSEBENCH_CACHE:-$HOME/.cache/sparsebench}}
PYVER=${PYVER:-3.12}
mkdir -p "$CARRY/whl" "$CARRY/cache"
cp -r /usr/share/datasets/fashion-mnist "$CARRY/"
cp -r "$CACHE/models" "$CARRY/cache/"
python3 -m pip download --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  --platform any -d "$CARRY/whl" robustbench==1.1.1 pyautoattack==0.2.0 gdown==5.1.0 beautifulsoup4 soupsieve \
  geotorch setuptools==80.9.0 torchattacks==3.5.1
# pyautoattack's wheel carries 45 MB of example checkpoints that robustbench never reads.
zip -q -d "$CARRY"/whl/pyautoattack-0.2.0-py3-none-any.whl 'pyautoattack/examples/*'
du -sh "$CARRY"

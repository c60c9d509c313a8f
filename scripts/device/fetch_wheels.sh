#!/usr/bin/env bash
# Download (here, where PyPI is reachable) the wheels a GPU device machine lacks, for its
# Python 3.12 x86-64 image (which already has torch, transformers, safetensors, numpy,
# pyarrow, psutil, accelerate, pytest...). Two groups, each under the 64 MiB a device call
# may carry:
#   app    -> .whl-app    the core's own dependencies + bitsandbytes (GPU tests, extraction bench)
#   bench  -> .whl-bench  the core's dependencies + SAELens and sparsify (SAE training bench)
# Both folders are git-ignored. See scripts/device/README.md for the whole procedure.
set -euo pipefail
cd "$(dirname "$0")/../.."
group="${1:?usage: fetch_wheels.sh app|bench}"
CORE="platformdirs==4.14.8 sqlite-utils==4.2.1 sqlite-fts4==1.0.3 click-default-group==1.2.4
      datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 gguf==0.19.0"
case "$group" in
  app)   dest=.whl-app;   pkgs="$CORE bitsandbytes==0.50.2" ;;
  bench) dest=.whl-bench; pkgs="$CORE sae-lens==6.54.12 eai-sparsify==1.3.3 transformer-lens==3.9.0
            better-abc==0.0.3 docstring_parser==0.18.0 natsort==8.4.0 pydantic==2.14.4
            pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
            schedulefree==1.4.1 simple-parsing==0.1.9 wandb==0.31.0 fancy-einsum==0.0.3
            beartype==0.23.1 typeguard==4.6.1 truststore==0.10.5 python-dotenv==1.2.4
            tenacity==9.2.1 babe==0.0.7 httpcore2==2.16.2 httpx2==2.16.2" ;;
  *) echo "unknown group $group (app|bench)" >&2; exit 2 ;;
esac
mkdir -p "$dest"
grep -qx "/$dest/" .git/info/exclude 2>/dev/null || echo "/$dest/" >> .git/info/exclude
plat=""
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64 any; do plat="$plat --platform $p"; done
for pkg in $pkgs; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp $plat -d "$dest" "$pkg" 2>&1 | grep -v "is ignored" || true
done
du -sh "$dest"

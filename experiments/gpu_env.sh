# Sourced by the prepared GPU scripts: wheels carried in .whl (packages the
# GPU image lacks, e.g. ml-collections), the source tree on PYTHONPATH, the
# carried Omniglot cache, and $OUT created.
OUT="${OUT:-/tmp/metalearn-gpu}"
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH=".:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
export METALEARN_CACHE_DIR="${METALEARN_CACHE_DIR:-.cache/omniglot}"

#!/bin/sh
# RQ's side of `multiproc bench --workload redis_pool`: installs RQ (pip) in a
# virtualenv kept at $RQ_VENV (default: $TMPDIR/multiproc-rq-venv) on first
# use, then runs rq_bench.py there. Usage: rq_bench.sh URL T P
set -e
here=$(cd "$(dirname "$0")" && pwd)
venv=${RQ_VENV:-${TMPDIR:-/tmp}/multiproc-rq-venv}
if [ ! -x "$venv/bin/rq" ]; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet rq >&2
fi
exec "$venv/bin/python" "$here/rq_bench.py" "$@"

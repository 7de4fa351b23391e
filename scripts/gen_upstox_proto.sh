#!/usr/bin/env bash
# Regenerate feeds/providers/upstox/proto/MarketDataFeedV3_pb2.py (+ .pyi) from the .proto.
# Usage: scripts/gen_upstox_proto.sh
#
# protoc comes from a pinned grpcio-tools installed into a throwaway virtualenv (deleted on
# exit), so the project's .venv keeps its own protobuf runtime. The gencode version that
# grpcio-tools 1.85.1 stamps (7.35.x) is not newer than the runtime (protobuf 7.36.2), so the
# generated file's runtime version check passes; the last step proves it by importing the
# module with .venv's interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."

GRPCIO_TOOLS_VERSION="1.85.1"
PROTO_DIR="feeds/providers/upstox/proto"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$PY" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  "grpcio-tools==$GRPCIO_TOOLS_VERSION"
echo "protoc: $("$tmp/venv/bin/python" -m grpc_tools.protoc --version)"

# -I is the proto folder itself so the descriptor's file name is "MarketDataFeedV3.proto",
# byte-identical to the SDK's: both modules can then share one descriptor pool.
wkt="$("$tmp/venv/bin/python" -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')"
"$tmp/venv/bin/python" -m grpc_tools.protoc -I "$PROTO_DIR" -I "$wkt" \
  --python_out="$PROTO_DIR" --pyi_out="$PROTO_DIR" "$PROTO_DIR/MarketDataFeedV3.proto"

# The runtime version check runs at import: fail here, not in production.
if [ -x .venv/bin/python ]; then
  .venv/bin/python -c 'from feeds.providers.upstox.proto import MarketDataFeedV3_pb2 as m; print("import ok:", m.DESCRIPTOR.name)'
fi

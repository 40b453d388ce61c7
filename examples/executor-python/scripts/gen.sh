#!/usr/bin/env bash
# Regenerates gen/ (the Python protobuf and gRPC modules) from the
# repository's proto/ with the compilers Debian ships: protoc from
# protobuf-compiler and grpc_python_plugin from protobuf-compiler-grpc.
# They match the runtimes the executor uses (python3-protobuf 3.21,
# python3-grpcio 1.51). python3-grpc-tools is not used: it bundles protoc
# 3.5, which rejects the proto3 `optional` fields in coordinator.proto.
#
#   scripts/gen.sh          rewrite gen/
#   scripts/gen.sh --check  fail if gen/ differs from a fresh generation
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
root=$(cd "$here/../.." && pwd)
want_protoc="libprotoc 3.21.12"

check=false
case "${1:-}" in
  --check) check=true ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

for tool in protoc grpc_python_plugin; do
  if ! command -v "$tool" >/dev/null; then
    echo "$tool not found: apt-get install -y protobuf-compiler protobuf-compiler-grpc" >&2
    exit 1
  fi
done
# Another protoc writes other (equally valid) code; the check compares bytes,
# so it holds only for the compiler the committed code came from.
if [ "$(protoc --version)" != "$want_protoc" ]; then
  echo "protoc is '$(protoc --version)', gen/ was made with '$want_protoc' (Debian bookworm's protobuf-compiler)" >&2
  exit 1
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
protoc -I "$root/proto" \
  --python_out="$out" \
  --grpc_python_out="$out" \
  --plugin=protoc-gen-grpc_python="$(command -v grpc_python_plugin)" \
  tasker/executor/v1/executor.proto \
  tasker/coordinator/v1/coordinator.proto

if $check; then
  if ! diff -r -x __pycache__ "$out" "$here/gen" >/dev/null; then
    diff -rq -x __pycache__ "$out" "$here/gen" >&2 || true
    echo "examples/executor-python/gen differs from scripts/gen.sh: regenerate and commit" >&2
    exit 1
  fi
  exit 0
fi
rm -rf "$here/gen"
cp -r "$out" "$here/gen"
chmod -R u+rwX,go+rX "$here/gen"

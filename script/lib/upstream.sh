# shellcheck shell=bash
# Upstream Flynn for the scripts that build Go programs inside it (script/test-flynn-release,
# script/bench-install): unpack Flynn c283e9f5, lay libflynnrel over it with
# script/flynn-integrate, and build the test programs of test/flynn/ there with
# `go build -mod=vendor`, as script/test-flynn does for test/flynn/tufrepo.
#
# Sourced, never run. The sourcing script runs from the repository's top and sets
# `set -euo pipefail`.
#
#   upstream_flynn WORK         unpacks Flynn into WORK/pristine/flynn and WORK/flynn (the copy
#                               to integrate) and runs script/flynn-integrate on the copy; sets
#                               UPSTREAM_FLYNN=WORK/flynn
#   upstream_build_tool NAME OUT
#                               copies test/flynn/NAME to $UPSTREAM_FLYNN/util/NAME-test and
#                               builds it there into OUT (go build -mod=vendor)
#   upstream_tool_digest NAME   a digest of test/flynn/NAME's sources and the Go version (for
#                               callers that cache a built tool)
#
# The tarball is ../shared/upstream/flynn-c283e9f5.tar.gz (checked against its SHA256SUMS), or
# FLYNN_UPSTREAM_TARBALL; without either, that commit is downloaded from GitHub.

UPSTREAM_COMMIT=c283e9f51589c2a7db6b3727dcceefc5a0f849cf
UPSTREAM_FLYNN=""

upstream_flynn() {
  local work=$1 tarball=${FLYNN_UPSTREAM_TARBALL:-$PWD/../shared/upstream/flynn-c283e9f5.tar.gz} tool
  for tool in cargo go gcc patch tar gzip sha256sum; do
    command -v "$tool" >/dev/null 2>&1 || {
      echo "upstream Flynn: $tool is required; install it and run again" >&2
      return 1
    }
  done
  mkdir -p -- "$work/pristine"
  if [[ -f $tarball ]]; then
    if [[ -z ${FLYNN_UPSTREAM_TARBALL:-} ]]; then
      (cd "$(dirname -- "$tarball")" && sha256sum --quiet -c SHA256SUMS) || {
        echo "$tarball does not match its SHA256SUMS" >&2
        return 1
      }
    fi
    tar xzf "$tarball" -C "$work/pristine"
  else
    echo "no $tarball: downloading flynn/flynn@$UPSTREAM_COMMIT from GitHub (set FLYNN_UPSTREAM_TARBALL to use a local copy)"
    command -v curl >/dev/null 2>&1 || {
      echo "upstream Flynn: curl is required to download Flynn" >&2
      return 1
    }
    curl -fsSL --retry 3 "https://codeload.github.com/flynn/flynn/tar.gz/$UPSTREAM_COMMIT" | tar xz -C "$work/pristine"
    mv -- "$work/pristine/flynn-$UPSTREAM_COMMIT" "$work/pristine/flynn"
  fi
  [[ -f $work/pristine/flynn/builder/manifest.json ]] || {
    echo "upstream Flynn: $tarball has no flynn/builder/manifest.json" >&2
    return 1
  }
  cp -a -- "$work/pristine/flynn" "$work/flynn"
  script/flynn-integrate "$work/flynn"
  UPSTREAM_FLYNN=$work/flynn
}

upstream_build_tool() {
  local name=$1 out=$2
  [[ -n $UPSTREAM_FLYNN && -d test/flynn/$name ]] || {
    echo "upstream_build_tool $name: call upstream_flynn first, from the repository's top" >&2
    return 1
  }
  rm -rf -- "$UPSTREAM_FLYNN/util/$name-test"
  cp -r -- "test/flynn/$name" "$UPSTREAM_FLYNN/util/$name-test"
  (cd "$UPSTREAM_FLYNN" && env -u CGO_CFLAGS -u CGO_LDFLAGS -u GOFLAGS go build -mod=vendor -o "$out" "./util/$name-test")
}

upstream_tool_digest() {
  {
    go version
    echo "$UPSTREAM_COMMIT"
    find "test/flynn/$1" -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  } | sha256sum | cut -c1-16
}

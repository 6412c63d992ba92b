# shellcheck shell=bash
# Helpers of the end-to-end tests of script/install-flynn-github (bats, loaded with `load helpers`).
#
# setup_file builds synthetic releases with script/make-synthetic-build, packages them with
# `flynnrel package`, adds tampered copies under their own tags, and serves everything with
# `flynnrel serve` on 127.0.0.1. GitHub is never contacted.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export REPO
INSTALLER=$REPO/script/install-flynn-github
export INSTALLER

# The two good releases (V1 < V2) and the second repository that serves a copy of V1.
export V1=v2024.01.27.0 V2=v2024.01.27.1 OTHER_REPO=acme/flynn-fork

# Tampered copies, each under its own tag: lower than V1 and marked prerelease, so the stable
# channel never selects them.
export TAG_BAD_HELPER=v2023.12.01.0      # flynnrel-linux-amd64.gz modified
export TAG_BAD_COMPONENT=v2023.12.02.0   # flynn-host-linux-amd64.gz modified after packaging
export TAG_NO_ENTRY=v2023.12.03.0        # flynn-host-linux-amd64.gz's line removed from checksums
export TAG_NO_HELPER_ENTRY=v2023.12.04.0 # flynnrel-linux-amd64.gz's line removed
export TAG_NO_CHECKSUMS=v2023.12.05.0    # checksums.sha512 removed
export TAG_SUBSTRING=v2023.12.06.0       # only a line for xflynnrel-linux-amd64.gz
export TAG_LEGACY_HELPER=v2023.12.07.0   # made before the rename: flynn-release-linux-amd64.gz

# python3 for JSON: the system one when present (a version manager's shim costs ~0.3 s a call).
if [[ -x /usr/bin/python3 ]]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
export PYTHON

# flynn_release_bin: the helper binary the tests package and serve with (built if missing).
flynn_release_bin() {
  local bin=${FLYNN_RELEASE_BIN:-$REPO/target/debug/flynnrel}
  if [[ ! -x $bin ]]; then
    if [[ -n ${FLYNN_RELEASE_BIN:-} ]]; then
      echo "FLYNN_RELEASE_BIN=$bin is not executable" >&2
      return 1
    fi
    (cd "$REPO" && cargo build --quiet --bin flynnrel) >&2 || return 1
  fi
  printf '%s\n' "$bin"
}

# json_get FILE KEY: prints the top-level KEY of the JSON object in FILE ("" when absent).
json_get() {
  "$PYTHON" -c 'import json, sys
v = json.load(open(sys.argv[1])).get(sys.argv[2])
print("" if v is None else v)' "$1" "$2"
}

# json_fields FILE: "key=value" for every top-level field of the JSON object in FILE.
json_fields() {
  "$PYTHON" -c 'import json, sys
for k, v in json.load(open(sys.argv[1])).items():
    print(f"{k}={v}")' "$1"
}

# release_dir TAG [REPO]: the served folder of a release.
release_dir() { printf '%s/%s/%s\n' "$SERVE" "${2:-flynn/flynn}" "$1"; }

# package_release VERSION CREATED_AT: synthetic build + flynnrel package into the served tree.
package_release() {
  local version=$1 created=$2 build=$E2E_WORK/build-$1 out
  out=$(release_dir "$version")
  "$REPO/script/make-synthetic-build" "$version" "$build" --layers 1
  "$HELPER" -q package --version "$version" --build-dir "$build" --out "$out" --helper "$HELPER"
  printf '{"created_at": "%s"}\n' "$created" >"$out/.release.json"
}

# clone_release SRC-TAG NEW-TAG [REPO]: a copy of a good release under another tag. Files are hard
# links, so every tampering below replaces a file (write + mv) and never edits one in place.
clone_release() {
  local src dst
  src=$(release_dir "$1")
  dst=$(release_dir "$2" "${3:-flynn/flynn}")
  mkdir -p "$(dirname "$dst")"
  cp -al "$src" "$dst"
  rm -f "$dst/.release.json"
  if [[ ${3:-flynn/flynn} == flynn/flynn ]]; then
    printf '{"created_at": "2023-12-01T10:00:00Z", "prerelease": true}\n' >"$dst/.release.json"
  else
    printf '{"created_at": "2024-01-27T10:00:00Z"}\n' >"$dst/.release.json"
  fi
}

# replace_file FILE: reads the new contents from stdin and replaces FILE (breaking hard links).
replace_file() {
  local tmp
  tmp=$(mktemp "$1.XXXXXX")
  cat >"$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$1"
}

# corrupt_gz FILE: a valid gzip stream with other contents (same name, different bytes).
corrupt_gz() {
  { gzip -dc "$1"; printf '\n# tampered\n'; } | gzip -9n | replace_file "$1"
}

make_tampered_releases() {
  local d
  clone_release "$V1" "$TAG_BAD_HELPER"
  d=$(release_dir "$TAG_BAD_HELPER")
  # Flip the helper: a different, still valid gzip of a different binary.
  printf '#!/bin/sh\necho evil helper >&2\nexit 0\n' | gzip -9n | replace_file "$d/flynnrel-linux-amd64.gz"

  clone_release "$V1" "$TAG_BAD_COMPONENT"
  corrupt_gz "$(release_dir "$TAG_BAD_COMPONENT")/flynn-host-linux-amd64.gz"

  clone_release "$V1" "$TAG_NO_ENTRY"
  d=$(release_dir "$TAG_NO_ENTRY")
  grep -v '  flynn-host-linux-amd64\.gz$' "$d/checksums.sha512" | replace_file "$d/checksums.sha512"

  clone_release "$V1" "$TAG_NO_HELPER_ENTRY"
  d=$(release_dir "$TAG_NO_HELPER_ENTRY")
  grep -v '  flynnrel-linux-amd64\.gz$' "$d/checksums.sha512" | replace_file "$d/checksums.sha512"

  clone_release "$V1" "$TAG_NO_CHECKSUMS"
  rm -f "$(release_dir "$TAG_NO_CHECKSUMS")/checksums.sha512"

  clone_release "$V1" "$TAG_SUBSTRING"
  d=$(release_dir "$TAG_SUBSTRING")
  sed 's/  flynnrel-linux-amd64\.gz$/  xflynnrel-linux-amd64.gz/' "$d/checksums.sha512" |
    replace_file "$d/checksums.sha512"

  clone_release "$V1" "$TAG_LEGACY_HELPER"
  d=$(release_dir "$TAG_LEGACY_HELPER")
  mv "$d/flynnrel-linux-amd64.gz" "$d/flynn-release-linux-amd64.gz"
  sed 's/  flynnrel-linux-amd64\.gz$/  flynn-release-linux-amd64.gz/' "$d/checksums.sha512" |
    replace_file "$d/checksums.sha512"

  clone_release "$V1" "$V1" "$OTHER_REPO"
}

# start_server: serves $SERVE in the background; exports the URLs and SERVER_PID.
start_server() {
  local ready=$E2E_WORK/server.json
  rm -f "$ready"
  # No inherited bats file descriptors: a background child holding them stalls bats.
  "$HELPER" serve "$SERVE" --ready-file "$ready" --request-log "$E2E_WORK/requests.jsonl" -q \
    </dev/null >"$E2E_WORK/server.log" 2>&1 3>&- &
  SERVER_PID=$!
  export SERVER_PID
  local _
  for _ in $(seq 200); do
    [[ -s $ready ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  if [[ ! -s $ready ]]; then
    echo "the release server did not start:" >&2
    cat "$E2E_WORK/server.log" >&2
    return 1
  fi
  FLYNN_GITHUB_API_URL=$(json_get "$ready" api_url)
  FLYNN_GITHUB_URL=$(json_get "$ready" web_url)
  export FLYNN_GITHUB_API_URL FLYNN_GITHUB_URL
}

stop_server() {
  if [[ -n ${SERVER_PID:-} ]]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
}

e2e_setup_file() {
  HELPER=$(flynn_release_bin)
  export HELPER
  E2E_WORK=$BATS_FILE_TMPDIR
  SERVE=$E2E_WORK/releases
  export E2E_WORK SERVE
  mkdir -p "$SERVE"
  # V1 is newer by date than V2 (a backport published later): the channel must still pick V2.
  package_release "$V2" 2024-01-27T10:00:00Z
  package_release "$V1" 2024-01-28T10:00:00Z
  make_tampered_releases
  make_signed_releases
  start_server
}

# make_signed_releases: releases of $SIGNED_REPO signed with a key made by the real minisign tool
# (V1, V2), one unsigned (v2024.01.27.5), and one carrying V1's checksums and signature under
# another tag (mix-and-match: a valid signature, for another version, v2024.01.27.6). Exports SIGN_PUB (the RWQ… key) and OTHER_PUB.
make_signed_releases() {
  SIGNED_REPO=acme/signed
  export SIGNED_REPO
  minisign -G -W -p "$E2E_WORK/sign.pub" -s "$E2E_WORK/sign.key" >/dev/null
  minisign -G -W -p "$E2E_WORK/other.pub" -s "$E2E_WORK/other.key" >/dev/null
  SIGN_PUB=$(tail -n 1 "$E2E_WORK/sign.pub")
  OTHER_PUB=$(tail -n 1 "$E2E_WORK/other.pub")
  export SIGN_PUB OTHER_PUB
  local v out
  for v in "$V1" "$V2" v2024.01.27.5 v2024.01.27.6; do
    out=$(release_dir "$v" "$SIGNED_REPO")
    "$REPO/script/make-synthetic-build" "$v" "$E2E_WORK/build-signed-$v" --layers 1
    if [[ $v == v2024.01.27.5 ]]; then
      "$HELPER" -q --repo "$SIGNED_REPO" package --version "$v" --build-dir "$E2E_WORK/build-signed-$v" --out "$out" --helper "$HELPER"
    else
      "$HELPER" -q --repo "$SIGNED_REPO" package --version "$v" --build-dir "$E2E_WORK/build-signed-$v" --out "$out" \
        --helper "$HELPER" --sign-key "$E2E_WORK/sign.key"
    fi
    printf '{"created_at": "2024-02-01T00:00:00Z", "prerelease": true}\n' >"$out/.release.json"
  done
  out=$(release_dir v2024.01.27.6 "$SIGNED_REPO")
  local f
  for f in checksums.sha512 checksums.sha512.minisig; do
    cp "$(release_dir "$V1" "$SIGNED_REPO")/$f" "$out/$f.new"
    mv "$out/$f.new" "$out/$f"
  done
}

# e2e_setup: a clean environment (only the server URLs) and a fresh ROOT and TMPDIR per test.
e2e_setup() {
  unset FLYNN_GITHUB_REPO FLYNN_VERSION FLYNN_UPDATE_CHANNEL FLYNN_RELEASE_PUBLIC_KEY \
    FLYNN_GITHUB_TOKEN GH_TOKEN GITHUB_TOKEN
  ROOT=$BATS_TEST_TMPDIR/root
  TMPDIR=$BATS_TEST_TMPDIR/tmp
  mkdir -p "$TMPDIR"
  export TMPDIR
  UNIT=/lib/systemd/system/flynn-host.service
  UNIT_BEFORE=$(snapshot_file "$UNIT")
}

# snapshot_file PATH: one line describing PATH (absent, or type/mode/target/sha512).
snapshot_file() {
  if [[ ! -e $1 && ! -L $1 ]]; then
    echo "absent $1"
  else
    (cd "$(dirname "$1")" && snapshot_entry "./$(basename "$1")")
  fi
}

# snapshot_entry PATH (relative to the current directory): "TYPE MODE PATH [-> TARGET] [SHA512]".
snapshot_entry() {
  local p=$1 type mode
  type=$(stat -c %F "$p")
  mode=$(stat -c %a "$p")
  if [[ -L $p ]]; then
    printf '%s %s %s -> %s\n' "$type" "$mode" "$p" "$(readlink "$p")"
  elif [[ -f $p ]]; then
    printf '%s %s %s %s\n' "$type" "$mode" "$p" "$(sha512sum <"$p" | cut -d' ' -f1)"
  else
    printf '%s %s %s\n' "$type" "$mode" "$p"
  fi
}

# snapshot ROOT: every path under ROOT (ROOT itself included, as "."), sorted, with type, mode,
# symlink target and sha512 of regular files. "(absent)" when ROOT does not exist.
snapshot() {
  if [[ ! -e $1 ]]; then
    echo "(absent)"
    return 0
  fi
  (
    cd "$1" || exit 1
    find . -print0 | LC_ALL=C sort -z | while IFS= read -r -d '' p; do snapshot_entry "$p"; done
  )
}

# assert_snapshot_equal BEFORE AFTER: fails with a diff when the two snapshots differ.
assert_snapshot_equal() {
  if [[ $1 != "$2" ]]; then
    echo "the tree changed:" >&2
    diff <(printf '%s\n' "$1") <(printf '%s\n' "$2") >&2 || true
    return 1
  fi
}

# assert_failure_with TEXT: the last `run` failed and its output contains TEXT.
# shellcheck disable=SC2154 # $status and $output are set by bats' run
assert_failure_with() {
  if [[ $status -eq 0 ]]; then
    printf 'expected a failure, got exit 0; output:\n%s\n' "$output" >&2
    return 1
  fi
  if [[ $output != *"$1"* ]]; then
    printf 'expected the output to contain %q (exit %s); output:\n%s\n' "$1" "$status" "$output" >&2
    return 1
  fi
}

# assert_success_run: the last `run` exited 0.
# shellcheck disable=SC2154 # $status and $output are set by bats' run
assert_success_run() {
  if [[ $status -ne 0 ]]; then
    printf 'expected exit 0, got %s; output:\n%s\n' "$status" "$output" >&2
    return 1
  fi
}

# assert_nothing_outside: no systemd unit appeared or changed, TMPDIR is empty, no temp folder
# of the installer is left in ROOT.
assert_nothing_outside() {
  local unit_after left
  unit_after=$(snapshot_file "$UNIT")
  [[ $unit_after == "$UNIT_BEFORE" ]] || { echo "$UNIT changed: $UNIT_BEFORE => $unit_after" >&2; return 1; }
  left=$(find "$TMPDIR" -mindepth 1 -print)
  [[ -z $left ]] || { printf 'left in TMPDIR:\n%s\n' "$left" >&2; return 1; }
  if [[ -d $ROOT ]]; then
    left=$(find "$ROOT" -name '.install-flynn.*' -print)
    [[ -z $left ]] || { printf 'installer temp folders left:\n%s\n' "$left" >&2; return 1; }
  fi
}

# install_flynn ARGS...: runs the installer as a file with bash.
install_flynn() { bash "$INSTALLER" "$@"; }

# new_root_with_marker: ROOT exists with one pre-existing file, so a failure's snapshot is not
# trivially empty.
new_root_with_marker() {
  mkdir -p "$ROOT/etc"
  printf 'pre-existing\n' >"$ROOT/etc/marker"
}

# closed_port: a loopback TCP port nothing listens on.
closed_port() {
  "$PYTHON" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# expected_tree VERSION: the exact listing of a fresh install of VERSION ("TYPE MODE PATH [TARGET]").
expected_tree() {
  local v=$1 id
  cat <<EOF
d 755 etc
d 755 etc/flynn
f 644 etc/flynn/bootstrap-manifest.json
f 644 etc/flynn/channel.txt
f 644 etc/flynn/images.$v.json
f 644 etc/flynn/install-source.json
d 755 usr
d 755 usr/local
d 755 usr/local/bin
l 777 usr/local/bin/flynn flynn-linux-amd64
l 777 usr/local/bin/flynn-host flynn-host.$v
f 755 usr/local/bin/flynn-host.$v
l 777 usr/local/bin/flynn-init flynn-init.$v
f 755 usr/local/bin/flynn-init.$v
l 777 usr/local/bin/flynn-linux-amd64 flynn-linux-amd64.$v
f 755 usr/local/bin/flynn-linux-amd64.$v
f 755 usr/local/bin/flynnrel
d 755 usr/local/share
d 755 usr/local/share/man
d 755 usr/local/share/man/man1
f 644 usr/local/share/man/man1/flynnrel.1
d 755 usr/share
d 755 usr/share/bash-completion
d 755 usr/share/bash-completion/completions
f 644 usr/share/bash-completion/completions/flynnrel
d 755 var
d 755 var/lib
d 755 var/lib/flynn
d 755 var/lib/flynn/layer-cache
EOF
  for id in $(layer_ids "$E2E_WORK/build-$v/manifests/images.json"); do
    echo "f 644 var/lib/flynn/layer-cache/$id.squashfs"
  done
}

# actual_tree ROOT: the listing of ROOT in expected_tree's format.
actual_tree() {
  (cd "$1" && find . -mindepth 1 -printf '%y %m %P %l\n' | sed 's/ $//' | LC_ALL=C sort -k3,3)
}

# layer_ids IMAGES-JSON: every distinct layer id, one a line.
layer_ids() {
  "$PYTHON" -c 'import json, sys
ids = set()
def walk(v):
    if isinstance(v, dict):
        for k, c in v.items():
            if k == "layers" and isinstance(c, list):
                ids.update(l["id"] for l in c)
            else:
                walk(c)
    elif isinstance(v, list):
        for c in v:
            walk(c)
walk(json.load(open(sys.argv[1])))
print("\n".join(sorted(ids)))' "$1"
}

# layer_specs IMAGES-JSON: "ID LENGTH SHA512_256" for every distinct layer.
layer_specs() {
  "$PYTHON" -c 'import json, sys
out = {}
def walk(v):
    if isinstance(v, dict):
        for k, c in v.items():
            if k == "layers" and isinstance(c, list):
                for l in c:
                    out[l["id"]] = (l["length"], l["hashes"]["sha512_256"])
            else:
                walk(c)
    elif isinstance(v, list):
        for c in v:
            walk(c)
walk(json.load(open(sys.argv[1])))
for i in sorted(out):
    print(i, out[i][0], out[i][1])' "$1"
}

# assert_installed ROOT VERSION [REPO] [CHANNEL]: the complete, exact layout of VERSION.
assert_installed() {
  local root=$1 v=$2 repo=${3:-flynn/flynn} channel=${4:-stable} r
  r=$root/etc/flynn/install-source.json
  diff <(expected_tree "$v" | LC_ALL=C sort -k3,3) <(actual_tree "$root") >&2 ||
    { echo "the installed tree differs from the expected one (< expected, > actual)" >&2; return 1; }
  [[ $("$root/usr/local/bin/flynn-host" version) == "$v" ]] || { echo "flynn-host version is not $v" >&2; return 1; }
  local -A rc=()
  local k val
  while IFS='=' read -r k val; do rc[$k]=$val; done < <(json_fields "$r")
  [[ ${rc[source]-} == github ]] || { echo "receipt source is not github: ${rc[source]-}" >&2; return 1; }
  [[ ${rc[repository]-} == "$repo" ]] || { echo "receipt repository is not $repo: ${rc[repository]-}" >&2; return 1; }
  [[ ${rc[version]-} == "$v" ]] || { echo "receipt version is not $v: ${rc[version]-}" >&2; return 1; }
  [[ ${rc[channel]-} == "$channel" ]] || { echo "receipt channel is not $channel: ${rc[channel]-}" >&2; return 1; }
  [[ ${rc[api_url]-} == "$FLYNN_GITHUB_API_URL" ]] || { echo "receipt api_url: ${rc[api_url]-}" >&2; return 1; }
  [[ ${rc[highest_seen_version]-} == "$v" ]] || { echo "receipt highest_seen_version: ${rc[highest_seen_version]-}" >&2; return 1; }
  [[ ${rc[installed_at]-} =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$ ]] ||
    { echo "receipt installed_at is not RFC 3339 UTC: ${rc[installed_at]-}" >&2; return 1; }
  # Configuration equals the build's, byte for byte.
  cmp "$E2E_WORK/build-$v/manifests/images.json" "$root/etc/flynn/images.$v.json" >&2 || return 1
  cmp "$E2E_WORK/build-$v/manifests/bootstrap-manifest.json" "$root/etc/flynn/bootstrap-manifest.json" >&2 || return 1
  local b
  for b in flynn-host flynn-init flynn-linux-amd64; do
    cmp "$E2E_WORK/build-$v/bin/$b" "$root/usr/local/bin/$b.$v" >&2 || return 1
  done
  # Every layer has the length and sha512_256 images.json gives it.
  local id len hash got
  while read -r id len hash; do
    got=$(openssl dgst -sha512-256 -r "$root/var/lib/flynn/layer-cache/$id.squashfs" | cut -d' ' -f1)
    [[ $got == "$hash" ]] || { echo "layer $id: sha512_256 $got, images.json says $hash" >&2; return 1; }
    [[ $(stat -c %s "$root/var/lib/flynn/layer-cache/$id.squashfs") == "$len" ]] ||
      { echo "layer $id: wrong length" >&2; return 1; }
  done < <(layer_specs "$root/etc/flynn/images.$v.json")
}

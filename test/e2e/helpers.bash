# shellcheck shell=bash
# Helpers of the end-to-end tests of script/install-flynn-github (bats, loaded with `load helpers`).
#
# setup_file starts the release fixture (script/lib/fixture: the standard synthetic releases,
# packaged, signed and tampered, served by `flynnrel serve` on 127.0.0.1), or uses the running one
# FLYNNREL_FIXTURE names. GitHub is never contacted.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export REPO
INSTALLER=$REPO/script/install-flynn-github
export INSTALLER

# python3 for JSON: the system one when present (a version manager's shim costs ~0.3 s a call).
if [[ -x /usr/bin/python3 ]]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
export PYTHON

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

# e2e_setup_file: the fixture's facts, under the names the tests use.
e2e_setup_file() {
  E2E_WORK=$BATS_FILE_TMPDIR
  export E2E_WORK
  local fixture=${FLYNNREL_FIXTURE:-}
  if [[ -z $fixture ]]; then
    fixture=$E2E_WORK/fixture
    # No inherited bats file descriptors: a background child holding them stalls bats.
    "$REPO/script/lib/fixture" start "$fixture" --owner "$$" >/dev/null 3>&- || return 1
    E2E_OWN_FIXTURE=$fixture
    export E2E_OWN_FIXTURE
  fi
  set -a
  # shellcheck source=/dev/null
  source "$fixture/fixture.env"
  set +a
  HELPER=$FIXTURE_HELPER SERVE=$FIXTURE_SERVE_DIR
  V1=$FIXTURE_V1 V2=$FIXTURE_V2 OTHER_REPO=$FIXTURE_OTHER_REPO SIGNED_REPO=$FIXTURE_SIGNED_REPO
  TAG_BAD_HELPER=$FIXTURE_TAG_BAD_HELPER TAG_BAD_COMPONENT=$FIXTURE_TAG_BAD_COMPONENT
  TAG_NO_ENTRY=$FIXTURE_TAG_NO_ENTRY TAG_NO_HELPER_ENTRY=$FIXTURE_TAG_NO_HELPER_ENTRY
  TAG_NO_CHECKSUMS=$FIXTURE_TAG_NO_CHECKSUMS TAG_SUBSTRING=$FIXTURE_TAG_SUBSTRING
  TAG_LEGACY_HELPER=$FIXTURE_TAG_LEGACY_HELPER TAG_UNSIGNED=$FIXTURE_TAG_UNSIGNED
  TAG_FOREIGN_SIGNATURE=$FIXTURE_TAG_FOREIGN_SIGNATURE
  SIGN_PUB=$FIXTURE_SIGN_PUB OTHER_PUB=$FIXTURE_OTHER_PUB
  FLYNN_GITHUB_API_URL=$FIXTURE_API_URL FLYNN_GITHUB_URL=$FIXTURE_WEB_URL
  export HELPER SERVE V1 V2 OTHER_REPO SIGNED_REPO TAG_BAD_HELPER TAG_BAD_COMPONENT TAG_NO_ENTRY \
    TAG_NO_HELPER_ENTRY TAG_NO_CHECKSUMS TAG_SUBSTRING TAG_LEGACY_HELPER TAG_UNSIGNED \
    TAG_FOREIGN_SIGNATURE SIGN_PUB OTHER_PUB FLYNN_GITHUB_API_URL FLYNN_GITHUB_URL
}

# e2e_teardown_file: stops the fixture setup_file started (not one FLYNNREL_FIXTURE named).
e2e_teardown_file() {
  [[ -z ${E2E_OWN_FIXTURE:-} ]] || "$REPO/script/lib/fixture" stop "$E2E_OWN_FIXTURE"
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
  UNIT_BEFORE=$(snapshot "$UNIT")
}

# snapshot PATH: the one tree-snapshot format (script/lib/snapshot): a line per entry, nothing
# when PATH does not exist.
snapshot() { "$REPO/script/lib/snapshot" "$1"; }

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
  unit_after=$(snapshot "$UNIT")
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
d 700 etc/flynn/cache
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
  for id in $(layer_ids "$FIXTURE_BUILDS_DIR/$v/manifests/images.json"); do
    echo "f 644 var/lib/flynn/layer-cache/$id.squashfs"
  done
}

# actual_tree ROOT: ROOT's snapshot in expected_tree's format (no ".", sizes or hashes).
actual_tree() {
  snapshot "$1" | awk '$6 != "." { print $1, $2, $6 ($1 == "l" ? " " $5 : "") }' | LC_ALL=C sort -k3,3
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
  cmp "$FIXTURE_BUILDS_DIR/$v/manifests/images.json" "$root/etc/flynn/images.$v.json" >&2 || return 1
  cmp "$FIXTURE_BUILDS_DIR/$v/manifests/bootstrap-manifest.json" "$root/etc/flynn/bootstrap-manifest.json" >&2 || return 1
  local b
  for b in flynn-host flynn-init flynn-linux-amd64; do
    cmp "$FIXTURE_BUILDS_DIR/$v/bin/$b" "$root/usr/local/bin/$b.$v" >&2 || return 1
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

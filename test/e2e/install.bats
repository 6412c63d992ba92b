#!/usr/bin/env bats
# End-to-end tests of script/install-flynn-github (docs/cli.md#the-install-script) against `flynnrel serve` on
# 127.0.0.1: real synthetic releases, packaged by `flynnrel package`, installed under a
# fresh --root per test. Failures must leave the root byte-for-byte unchanged. What the script
# does as Flynn's installer (checks, packages, refusals, --remove, the unit) is installer.bats.

load helpers
# expected_tree: the core's layout plus the systemd unit the script writes under --root.
load installer-helpers

setup_file() { e2e_setup_file; }
teardown_file() { e2e_teardown_file; }
setup() { e2e_setup; }

@test "install --version --root: exact files, modes, symlinks, layers, receipt; nothing outside the root" {
  local start end
  start=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  run install_flynn --root "$ROOT" --version "$V1"
  assert_success_run
  end=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  assert_installed "$ROOT" "$V1"
  [[ $(readlink "$ROOT/usr/local/bin/flynn-host") == "flynn-host.$V1" ]]
  [[ $(readlink "$ROOT/usr/local/bin/flynn") == flynn-linux-amd64 ]]
  [[ $("$ROOT/usr/local/bin/flynn" version) == "$V1" ]]
  local at
  at=$(json_get "$ROOT/etc/flynn/install-source.json" installed_at)
  [[ ! $at < $start && ! $at > $end ]] || { echo "installed_at $at not within [$start, $end]" >&2; false; }
  [[ $output == *"===> "*"Flynn is installed under $ROOT"* ]]
  # The helper stays for `flynnrel update`, with a completion and man page it generated itself.
  "$ROOT/usr/local/bin/flynnrel" --version
  bash -n "$ROOT/usr/share/bash-completion/completions/flynnrel"
  grep -q '_flynnrel()' "$ROOT/usr/share/bash-completion/completions/flynnrel"
  grep -q '^\.TH flynnrel' "$ROOT/usr/local/share/man/man1/flynnrel.1"
  assert_nothing_outside
}

@test "install --channel stable: picks the highest version, not the newest-dated release" {
  run install_flynn --root "$ROOT" --channel stable
  assert_success_run
  assert_installed "$ROOT" "$V2"
  [[ $(tr -d '\n' <"$ROOT/etc/flynn/channel.txt") == stable ]]
  assert_nothing_outside
}

@test "install without --version or --channel: defaults to the stable channel" {
  run install_flynn --root "$ROOT"
  assert_success_run
  assert_installed "$ROOT" "$V2"
}

@test "env: FLYNN_VERSION selects the version" {
  FLYNN_VERSION=$V1 run install_flynn --root "$ROOT"
  assert_success_run
  assert_installed "$ROOT" "$V1"
}

@test "env: --version wins over FLYNN_VERSION" {
  FLYNN_VERSION=$V2 run install_flynn --root "$ROOT" --version "$V1"
  assert_success_run
  assert_installed "$ROOT" "$V1"
}

@test "env: FLYNN_GITHUB_REPO selects the repository (receipt names it)" {
  FLYNN_GITHUB_REPO=$OTHER_REPO run install_flynn --root "$ROOT" --version "$V1"
  assert_success_run
  assert_installed "$ROOT" "$V1" "$OTHER_REPO"
}

@test "env: --repo wins over FLYNN_GITHUB_REPO" {
  FLYNN_GITHUB_REPO=nobody/missing run install_flynn --root "$ROOT" --version "$V1" --repo "$OTHER_REPO"
  assert_success_run
  assert_installed "$ROOT" "$V1" "$OTHER_REPO"
}

@test "env: --channel wins over FLYNN_VERSION" {
  FLYNN_VERSION=$V1 run install_flynn --root "$ROOT" --channel stable
  assert_success_run
  assert_installed "$ROOT" "$V2"
}

@test "env: --version wins over FLYNN_UPDATE_CHANNEL" {
  FLYNN_UPDATE_CHANNEL=stable run install_flynn --root "$ROOT" --version "$V1"
  assert_success_run
  assert_installed "$ROOT" "$V1"
}

@test "piped: cat install-flynn-github | bash -s -- --root R --version V" {
  run bash -c 'cat "$1" | bash -s -- --root "$2" --version "$3"' _ "$INSTALLER" "$ROOT" "$V1"
  assert_success_run
  assert_installed "$ROOT" "$V1"
  assert_nothing_outside
}

@test "published install-flynn asset, fetched with curl and piped, installs its baked version" {
  run bash -c 'curl -fsSL "$1" | bash -s -- --root "$2"' _ \
    "$FLYNN_GITHUB_URL/flynn/flynn/releases/download/$V1/install-flynn" "$ROOT"
  assert_success_run
  assert_installed "$ROOT" "$V1"
  assert_nothing_outside
}

@test "published install-flynn asset: --channel stable overrides its baked version" {
  run bash -c 'curl -fsSL "$1" | bash -s -- --root "$2" --channel stable' _ \
    "$FLYNN_GITHUB_URL/flynn/flynn/releases/download/$V1/install-flynn" "$ROOT"
  assert_success_run
  assert_installed "$ROOT" "$V2"
}

@test "published install-flynn asset has repo and version baked in" {
  local script
  script=$(curl -fsSL "$FLYNN_GITHUB_URL/flynn/flynn/releases/download/$V2/install-flynn")
  [[ $script == *"FLYNN_DEFAULT_REPO='flynn/flynn'"* ]]
  [[ $script == *"FLYNN_DEFAULT_VERSION='$V2'"* ]]
}

@test "re-running an install on a GitHub host is refused (Flynn: flynn-host update) and changes nothing" {
  run install_flynn --root "$ROOT" --version "$V1"
  assert_success_run
  local before
  before=$(snapshot "$ROOT")
  run install_flynn --root "$ROOT" --version "$V1"
  assert_failure_with "already installed under $ROOT from GitHub"
  assert_failure_with "run 'flynn-host update'"
  assert_snapshot_equal "$before" "$(snapshot "$ROOT")"
  assert_nothing_outside
}

@test "failure: installing an older version over a newer one is refused (anti-rollback), root unchanged" {
  # A TUF host that has run a higher version, converted on purpose: the core's anti-rollback
  # still refuses the lower version.
  tuf_host "$ROOT" "$V2" "$V2"
  local before
  before=$(snapshot "$ROOT")
  run install_flynn --root "$ROOT" --version "$V1" --convert-from-tuf
  assert_failure_with "anti-rollback"
  assert_failure_with "$V1"
  assert_snapshot_equal "$before" "$(snapshot "$ROOT")"
  assert_nothing_outside
}

@test "failure: unknown version names the version, root unchanged" {
  new_root_with_marker
  local before
  before=$(snapshot "$ROOT")
  run install_flynn --root "$ROOT" --version v2099.01.01.0
  assert_failure_with "v2099.01.01.0"
  assert_failure_with "could not download"
  assert_snapshot_equal "$before" "$(snapshot "$ROOT")"
  assert_nothing_outside
}

@test "failure: a root that did not exist before a failed install does not exist after it" {
  local fresh="$BATS_TEST_TMPDIR/never-created"
  [ ! -e "$fresh" ]
  run install_flynn --root "$fresh" --version v2099.01.01.0
  assert_failure_with "v2099.01.01.0"
  [ ! -e "$fresh" ]
  assert_nothing_outside
}

@test "failure: unreachable server (closed port) names the URL, root unchanged" {
  new_root_with_marker
  local before port
  before=$(snapshot "$ROOT")
  port=$(closed_port)
  FLYNN_GITHUB_URL=http://127.0.0.1:$port FLYNN_GITHUB_API_URL=http://127.0.0.1:$port \
    run install_flynn --root "$ROOT" --version "$V1"
  assert_failure_with "could not download http://127.0.0.1:$port/"
  assert_snapshot_equal "$before" "$(snapshot "$ROOT")"
  assert_nothing_outside
}

@test "failure: tampered helper asset is refused by the script before it runs, root unchanged" {
  new_root_with_marker
  local before
  before=$(snapshot "$ROOT")
  run install_flynn --root "$ROOT" --version "$TAG_BAD_HELPER"
  assert_failure_with "flynnrel-linux-amd64.gz does not match checksums.sha512"
  [[ $output != *"evil helper"* ]]
  [[ $output != *"installing with flynnrel"* ]]
  assert_snapshot_equal "$before" "$(snapshot "$ROOT")"
  assert_nothing_outside
}

@test "failure: tampered component (flynn-host) is refused by flynnrel install, root unchanged" {
  new_root_with_marker
  local before
  before=$(snapshot "$ROOT")
  run install_flynn --root "$ROOT" --version "$TAG_BAD_COMPONENT"
  assert_failure_with "flynn-host-linux-amd64.gz"
  assert_failure_with "flynnrel install failed"
  [[ $output == *"installing with flynnrel"* ]]
  assert_snapshot_equal "$before" "$(snapshot "$ROOT")"
  assert_nothing_outside
}

@test "failure: component missing from checksums.sha512 is refused, root unchanged" {
  new_root_with_marker
  local before
  before=$(snapshot "$ROOT")
  run install_flynn --root "$ROOT" --version "$TAG_NO_ENTRY"
  assert_failure_with "checksums.sha512 has no entry for flynn-host-linux-amd64.gz"
  assert_failure_with "flynnrel install failed"
  assert_snapshot_equal "$before" "$(snapshot "$ROOT")"
  assert_nothing_outside
}

@test "failure: helper missing from checksums.sha512 is refused by the script, root unchanged" {
  new_root_with_marker
  local before
  before=$(snapshot "$ROOT")
  run install_flynn --root "$ROOT" --version "$TAG_NO_HELPER_ENTRY"
  assert_failure_with "checksums.sha512 has 0 entries for flynnrel-linux-amd64.gz"
  assert_snapshot_equal "$before" "$(snapshot "$ROOT")"
  assert_nothing_outside
}

@test "failure: checksums.sha512 missing from the release, root unchanged" {
  new_root_with_marker
  local before
  before=$(snapshot "$ROOT")
  run install_flynn --root "$ROOT" --version "$TAG_NO_CHECKSUMS"
  assert_failure_with "could not download"
  assert_failure_with "$TAG_NO_CHECKSUMS/checksums.sha512"
  assert_snapshot_equal "$before" "$(snapshot "$ROOT")"
  assert_nothing_outside
}

@test "failure: a checksums line that names the helper only as a substring (xflynnrel-…) is refused" {
  new_root_with_marker
  local before
  before=$(snapshot "$ROOT")
  run install_flynn --root "$ROOT" --version "$TAG_SUBSTRING"
  assert_failure_with "checksums.sha512 has 0 entries for flynnrel-linux-amd64.gz"
  assert_snapshot_equal "$before" "$(snapshot "$ROOT")"
  assert_nothing_outside
}

@test "a release made before the rename (helper asset flynn-release-linux-amd64.gz) still installs" {
  run install_flynn --root "$ROOT" --version "$TAG_LEGACY_HELPER"
  assert_success_run
  [[ $output == *"downloading flynn-release-linux-amd64.gz"* ]]
  [[ $(readlink "$ROOT/usr/local/bin/flynn-host") == "flynn-host.$TAG_LEGACY_HELPER" ]]
  assert_nothing_outside
}

@test "loopback rule: plain http is allowed to exactly the URLs of testdata/url-policy.tsv (the core's table)" {
  # The script's function, as the script defines it, against the table the core is tested on.
  eval "$(sed -n '/^is_loopback_url() {$/,/^}$/p' "$INSTALLER")"
  local url verdict got n=0
  while IFS=$'\t' read -r url verdict; do
    [[ -z $url || $url == '#'* ]] && continue
    if is_loopback_url "$url"; then got=allow; else got=deny; fi
    [[ $got == "$verdict" ]] || { echo "$url: script says $got, table says $verdict" >&2; false; }
    n=$((n + 1))
  done <"$REPO/testdata/url-policy.tsv"
  ((n >= 20))
}

@test "failure: plain http to a host that only starts with 127. is refused, root unchanged" {
  new_root_with_marker
  local before
  before=$(snapshot "$ROOT")
  # curl is told https only for such a host, so it refuses before any name lookup.
  FLYNN_GITHUB_URL="http://127.attacker.example:${FLYNN_GITHUB_URL##*:}" run install_flynn --root "$ROOT" --version "$V1"
  [[ $status -ne 0 ]]
  [[ $output == *"refusing http://127.attacker.example"*"only https is allowed"* ]]
  assert_snapshot_equal "$before" "$(snapshot "$ROOT")"
  assert_nothing_outside
}

@test "failure: --version with --channel is refused, root unchanged" {
  new_root_with_marker
  local before
  before=$(snapshot "$ROOT")
  run install_flynn --root "$ROOT" --version "$V1" --channel stable
  assert_failure_with "--version and --channel exclude each other"
  assert_snapshot_equal "$before" "$(snapshot "$ROOT")"
  assert_nothing_outside
}

@test "failure: FLYNN_VERSION and FLYNN_UPDATE_CHANNEL both set (no flag) are refused, root unchanged" {
  new_root_with_marker
  local before
  before=$(snapshot "$ROOT")
  FLYNN_VERSION=$V1 FLYNN_UPDATE_CHANNEL=stable run install_flynn --root "$ROOT"
  assert_failure_with "FLYNN_VERSION and FLYNN_UPDATE_CHANNEL exclude each other"
  assert_snapshot_equal "$before" "$(snapshot "$ROOT")"
}

@test "failure: unknown option is refused with usage, a nonexistent root is not created" {
  run install_flynn --root "$ROOT" --bogus
  assert_failure_with "unknown option: --bogus"
  assert_failure_with "Usage: install-flynn"
  [[ ! -e $ROOT ]]
  assert_nothing_outside
}

@test "failure: unknown channel is refused, root unchanged" {
  new_root_with_marker
  local before
  before=$(snapshot "$ROOT")
  run install_flynn --root "$ROOT" --channel beta
  assert_failure_with "unknown channel: beta"
  assert_snapshot_equal "$before" "$(snapshot "$ROOT")"
}

@test "signed: a release signed with a minisign-tool key installs with --public-key and pins it" {
  run install_flynn --repo "$SIGNED_REPO" --root "$ROOT" --version "$V1" --public-key "$SIGN_PUB"
  assert_success_run
  [[ $output == *"verifying the signature of checksums.sha512"* ]]
  [[ $output == *"signature=verified"* ]]
  [ "$(json_get "$ROOT/etc/flynn/install-source.json" public_key)" = "$SIGN_PUB" ]
  assert_nothing_outside
}

@test "signed: the published install-flynn has the key baked in and enforces it" {
  curl -fsSL "$FLYNN_GITHUB_URL/$SIGNED_REPO/releases/download/$V2/install-flynn" -o "$BATS_TEST_TMPDIR/install-flynn"
  grep -q "^FLYNN_DEFAULT_PUBLIC_KEY='$SIGN_PUB'\$" "$BATS_TEST_TMPDIR/install-flynn"
  run bash "$BATS_TEST_TMPDIR/install-flynn" --root "$ROOT"
  assert_success_run
  [ "$(json_get "$ROOT/etc/flynn/install-source.json" public_key)" = "$SIGN_PUB" ]
  [ "$(json_get "$ROOT/etc/flynn/install-source.json" version)" = "$V2" ]
}

@test "signed: an unsigned release is refused when a key is configured, root unchanged" {
  new_root_with_marker
  local before
  before=$(snapshot "$ROOT")
  run install_flynn --repo "$SIGNED_REPO" --root "$ROOT" --version "$TAG_UNSIGNED" --public-key "$SIGN_PUB"
  assert_failure_with "checksums.sha512.minisig"
  assert_snapshot_equal "$before" "$(snapshot "$ROOT")"
  assert_nothing_outside
}

@test "signed: a release signed with another key is refused by the script, root unchanged" {
  new_root_with_marker
  local before
  before=$(snapshot "$ROOT")
  run install_flynn --repo "$SIGNED_REPO" --root "$ROOT" --version "$V1" --public-key "$OTHER_PUB"
  assert_failure_with "does not verify"
  assert_snapshot_equal "$before" "$(snapshot "$ROOT")"
}

@test "signed: a valid signature for another version (mix-and-match) is refused, root unchanged" {
  new_root_with_marker
  local before
  before=$(snapshot "$ROOT")
  run install_flynn --repo "$SIGNED_REPO" --root "$ROOT" --version "$TAG_FOREIGN_SIGNATURE" --public-key "$SIGN_PUB"
  assert_failure_with "does not name version=$TAG_FOREIGN_SIGNATURE"
  assert_snapshot_equal "$before" "$(snapshot "$ROOT")"
}

@test "--help prints usage and exits 0" {
  run install_flynn --help
  assert_success_run
  [[ $output == *"Usage: install-flynn"* ]]
  [[ $output == *"--version V"* && $output == *"--root DIR"* && $output == *"--channel"* ]]
}

# tmux_progress ARGS...: runs the helper on a real terminal (tmux, 200x50) and prints the screen.
tmux_progress() {
  local sock=$E2E_WORK/tmux.sock done=$E2E_WORK/tmux.done
  rm -f "$done"
  tmux -S "$sock" new-session -d -x 200 -y 50 \
    "$(printf '%q ' "$HELPER" "$@"); echo exit=\$? >$(printf '%q' "$done"); sleep 30"
  local _
  for _ in $(seq 600); do
    [[ -s $done ]] && break
    sleep 0.1
  done
  tmux -S "$sock" capture-pane -p -S -200
  tmux -S "$sock" kill-server 2>/dev/null || true
  cat "$done"
}

@test "terminal: install draws one overall bar, no asset twice, no file= list (tmux)" {
  run tmux_progress --api-url "$FLYNN_GITHUB_API_URL" --web-url "$FLYNN_GITHUB_URL" --root "$ROOT" install --version "$V1"
  [[ $output == *"exit=0"* ]] || { echo "$output" >&2; false; }
  [[ $output == *"assets"* ]]
  [[ $output != *"file="* ]] || { echo "file= list at default verbosity: $output" >&2; false; }
  [[ $(grep -c 'assets \[' <<<"$output") -eq 1 ]] || { echo "the overall bar was drawn more than once: $output" >&2; false; }
  [[ $output != *"download flynn-host-linux-amd64.gz"* ]]
  [[ $(readlink "$ROOT/usr/local/bin/flynn-host") == "flynn-host.$V1" ]]
}

@test "terminal: -v draws one bar per asset, each asset exactly once (tmux)" {
  run tmux_progress -v --api-url "$FLYNN_GITHUB_API_URL" --web-url "$FLYNN_GITHUB_URL" --root "$ROOT" install --version "$V1"
  [[ $output == *"exit=0"* ]] || { echo "$output" >&2; false; }
  local a n
  for a in flynn-host-linux-amd64.gz flynn-init-linux-amd64.gz images.json.gz layers.tar.gz; do
    # The bar lines (-v also logs each HTTP request, which names the asset in its URL).
    n=$(grep -c "download $a  *\[" <<<"$output" || true)
    [[ $n -eq 1 ]] || { echo "$a shown $n times: $output" >&2; false; }
  done
  [[ $output == *"file="* ]]
}

@test "no terminal: a few key=value progress lines, not one per chunk" {
  run install_flynn --root "$ROOT" --version "$V1"
  assert_success_run
  local n
  n=$(grep -c '^progress ' <<<"$output" || true)
  ((n >= 1 && n <= 4)) || { echo "$n progress lines: $output" >&2; false; }
  [[ $output != *"file="* ]]
}

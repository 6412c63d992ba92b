#!/usr/bin/env bats
# End-to-end tests of what script/install-flynn-github does as Flynn's own installer does
# (docs/cli.md#the-install-script): host checks, refusals of installed hosts, --remove/--clean,
# packages, zfs, zpool, the systemd unit. Runs without --root happen on the real paths inside a
# private mount namespace whose /etc, /var/lib and /usr are overlays (installer-helpers.bash):
# $UPPER is exactly what a run changed, and stubs record every system command, in order.

load helpers
load installer-helpers

setup_file() { e2e_setup_file; }
teardown_file() { e2e_teardown_file; }
setup() {
  e2e_setup
  sys_setup
}

# The calls of a successful install on Ubuntu, in order (the overlay check loads `overlay`).
INSTALL_CALLS=(
  "modprobe overlay"
  "apt-get install --yes iptables zfsutils-linux ntp"
  "modprobe zfs"
  "systemctl enable flynn-host.service"
)

# sys_unit: the unit file as the namespace saw it (/lib is /usr/lib on a merged-/usr host).
sys_unit() {
  if [[ -L /lib ]]; then echo "$UPPER/usr/lib/systemd/system/flynn-host.service"; else echo "$UPPER/lib/systemd/system/flynn-host.service"; fi
}

# assert_system_installed VERSION: $UPPER holds the GitHub install of VERSION and Flynn's unit,
# and the real system paths have none of it.
assert_system_installed() {
  local v=$1
  [[ $("$UPPER/usr/local/bin/flynn-host" version) == "$v" ]] || { echo "flynn-host is not $v" >&2; return 1; }
  [[ $(readlink "$UPPER/usr/local/bin/flynn-host") == "flynn-host.$v" ]]
  [[ $(json_get "$UPPER/etc/flynn/install-source.json" source) == github ]]
  [[ $(json_get "$UPPER/etc/flynn/install-source.json" version) == "$v" ]]
  [[ -x $UPPER/usr/local/bin/flynnrel ]]
  diff <(expected_unit) "$(sys_unit)" >&2
  [[ $(stat -c %a "$(sys_unit)") == 644 ]]
  [[ ! -e /usr/local/bin/flynn-host && ! -e /etc/flynn && ! -e /var/lib/flynn ]] ||
    { echo "the real system paths were written" >&2; return 1; }
  assert_nothing_outside
}

@test "unit: the unit the tests expect is upstream Flynn's, byte for byte (script/install-flynn.tmpl)" {
  local tarball=${FLYNN_UPSTREAM_TARBALL:-$REPO/../shared/upstream/flynn-c283e9f5.tar.gz}
  [[ -f $tarball ]] || skip "no upstream Flynn tarball at $tarball (set FLYNN_UPSTREAM_TARBALL)"
  local upstream
  upstream=$(tar -xzOf "$tarball" flynn/script/install-flynn.tmpl |
    sed -n '\|cat > /lib/systemd/system/flynn-host.service <<EOF|,/^EOF$/p' | sed '1d;$d')
  [[ -n $upstream ]]
  diff <(printf '%s\n' "$upstream") <(expected_unit)
}

@test "system: a fresh Ubuntu host gets the packages, zfs, Flynn, the unit, enabled: exact calls in order" {
  run sys_install --version "$V1"
  assert_success_run
  assert_calls "${INSTALL_CALLS[@]}"
  assert_system_installed "$V1"
  [[ $output == *'running "apt-get install --yes iptables zfsutils-linux ntp"'* ]]
  [[ $output == *'running "modprobe zfs"'* ]]
  [[ $output == *'running "systemctl enable flynn-host.service"'* ]]
  # Checks, then packages, then Flynn, then the unit.
  local order
  order=$(grep -oE 'verifying flynnrel-linux-amd64.gz|running "apt-get|installing with flynnrel|installing systemd unit|running "systemctl enable' <<<"$output" | tr '\n' '|')
  [[ $order == 'verifying flynnrel-linux-amd64.gz|running "apt-get|installing with flynnrel|installing systemd unit|running "systemctl enable|' ]] ||
    { echo "order: $order" >&2; false; }
  [[ $output =~ ===\>\ [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}\ Flynn\ is\ installed ]]
  [[ $output != *$'\033'* ]] # no colour without a terminal
}

@test "system: --no-ntp installs iptables and zfsutils-linux only" {
  run sys_install --version "$V1" --no-ntp
  assert_success_run
  assert_calls "modprobe overlay" "apt-get install --yes iptables zfsutils-linux" "modprobe zfs" "systemctl enable flynn-host.service"
  assert_system_installed "$V1"
}

@test "system: --zpool-create-device/--zpool-create-options create flynn-default after zfs, before Flynn" {
  run sys_install --version "$V1" --zpool-create-device "/dev/sdz /dev/sdy" --zpool-create-options "-f -o ashift=12"
  assert_success_run
  assert_calls "modprobe overlay" "zpool list -H -o name flynn-default" \
    "apt-get install --yes iptables zfsutils-linux ntp" "modprobe zfs" \
    "zpool create -f -o ashift=12 flynn-default /dev/sdz /dev/sdy" "systemctl enable flynn-host.service"
  [[ $output == *'running "zpool create -f -o ashift=12 flynn-default /dev/sdz /dev/sdy"'* ]]
  assert_system_installed "$V1"
}

@test "system: without --zpool-create-device no zpool is created (flynn-host makes its own), as Flynn" {
  run sys_install --version "$V1"
  assert_success_run
  [[ $(grep -c '^zpool' "$CALLS") == 0 ]]
  assert_calls "${INSTALL_CALLS[@]}"
}

@test "failure: --zpool-create-options without a device is refused before anything runs" {
  local before
  before=$(sys_snapshot)
  run sys_install --version "$V1" --zpool-create-options "-f"
  assert_failure_with "--zpool-create-options needs --zpool-create-device"
  assert_calls
  assert_snapshot_equal "$before" "$(sys_snapshot)"
  assert_nothing_outside
}

@test "failure: an existing flynn-default zpool with --zpool-create-device is refused before the packages" {
  local before
  before=$(sys_snapshot)
  FAKE_ZPOOL_EXISTS=1 run sys_install --version "$V1" --zpool-create-device /dev/sdz
  assert_failure_with "a zpool named flynn-default already exists"
  assert_failure_with "drop --zpool-create-device"
  assert_calls "modprobe overlay" "zpool list -H -o name flynn-default"
  assert_snapshot_equal "$before" "$(sys_snapshot)"
  assert_nothing_outside
}

@test "failure: Flynn failing after the zpool was created destroys that (empty) pool; nothing installed" {
  local before
  before=$(sys_snapshot)
  run sys_install --version "$TAG_BAD_COMPONENT" --zpool-create-device /dev/sdz
  assert_failure_with "flynnrel install failed"
  assert_calls "modprobe overlay" "zpool list -H -o name flynn-default" \
    "apt-get install --yes iptables zfsutils-linux ntp" "modprobe zfs" \
    "zpool create flynn-default /dev/sdz" "zpool destroy flynn-default"
  assert_snapshot_equal "$before" "$(sys_snapshot)"
  assert_nothing_outside
}

@test "failure: not root is refused first, nothing run, nothing changed" {
  local before
  before=$(sys_snapshot)
  FAKE_UID=1000 run sys_install --version "$V1"
  assert_failure_with "this script must be executed as the root user"
  assert_failure_with "sudo bash"
  assert_calls
  assert_snapshot_equal "$before" "$(sys_snapshot)"
  assert_nothing_outside
}

@test "failure: another distribution is refused and names --skip-os-check; with it the install runs" {
  sys_os_release 'Debian GNU/Linux 12 (bookworm)' 12
  local before
  before=$(sys_snapshot)
  run sys_install --version "$V1"
  assert_failure_with "only compatible with Ubuntu 16.04 and 18.04 (this host: Debian GNU/Linux 12 (bookworm))"
  assert_failure_with "pass --skip-os-check"
  assert_calls
  assert_snapshot_equal "$before" "$(sys_snapshot)"
  # The advice works.
  run sys_install --version "$V1" --skip-os-check
  assert_success_run
  assert_calls "${INSTALL_CALLS[@]}"
  assert_system_installed "$V1"
}

@test "system: Ubuntu 16.04 is accepted too" {
  sys_os_release 'Ubuntu 16.04.7 LTS' 16.04
  run sys_install --version "$V1"
  assert_success_run
  assert_system_installed "$V1"
}

@test "failure: a release that does not verify fails before any package is installed" {
  local before
  before=$(sys_snapshot)
  run sys_install --version "$TAG_BAD_HELPER"
  assert_failure_with "flynnrel-linux-amd64.gz does not match checksums.sha512"
  assert_calls "modprobe overlay"
  assert_snapshot_equal "$before" "$(sys_snapshot)"
  assert_nothing_outside
}

@test "failure: apt-get failing stops the install: Flynn is not installed, the error names the command" {
  local before
  before=$(sys_snapshot)
  FAIL_CALL="apt-get install --yes iptables zfsutils-linux ntp" run sys_install --version "$V1"
  assert_failure_with 'failed to run "apt-get install --yes iptables zfsutils-linux ntp", exit status 1'
  assert_failure_with "apt-get update"
  assert_calls "modprobe overlay" "apt-get install --yes iptables zfsutils-linux ntp"
  [[ $output != *"installing with flynnrel"* ]]
  assert_snapshot_equal "$before" "$(sys_snapshot)"
  assert_nothing_outside
}

@test "failure: no zfs module stops the install before Flynn" {
  local before
  before=$(sys_snapshot)
  FAIL_CALL="modprobe zfs" run sys_install --version "$V1"
  assert_failure_with 'failed to run "modprobe zfs", exit status 1'
  assert_calls "modprobe overlay" "apt-get install --yes iptables zfsutils-linux ntp" "modprobe zfs"
  assert_snapshot_equal "$before" "$(sys_snapshot)"
}

@test "failure: no OverlayFS (modprobe overlay fails) is refused with Flynn's message" {
  local before
  before=$(sys_snapshot)
  FAIL_CALL="modprobe overlay" run sys_install --version "$V1"
  assert_failure_with "OverlayFS is either missing or does not support multiple lower directories"
  assert_calls "modprobe overlay"
  assert_snapshot_equal "$before" "$(sys_snapshot)"
}

@test "failure: a host installed from GitHub is refused, pointing at flynn-host update and --clean" {
  run sys_install --version "$V1"
  assert_success_run
  : >"$CALLS"
  local before
  before=$(sys_snapshot)
  run sys_install --version "$V2"
  assert_failure_with "Flynn is already installed from GitHub (flynn/flynn)"
  assert_failure_with "run 'flynn-host update'"
  assert_failure_with "--clean"
  assert_calls "modprobe overlay"
  assert_snapshot_equal "$before" "$(sys_snapshot)"
  # --convert-from-tuf does not apply to a GitHub host.
  run sys_install --version "$V2" --convert-from-tuf
  assert_failure_with "already installed from GitHub"
  assert_snapshot_equal "$before" "$(sys_snapshot)"
}

@test "failure: a TUF host (no receipt) is refused, naming --convert-from-tuf" {
  tuf_host "$UPPER" v2023.06.01.0
  local before
  before=$(sys_snapshot)
  run sys_install --version "$V1"
  assert_failure_with "Flynn is already installed from TUF (https://dl.flynn.io/tuf)"
  assert_failure_with "pass --convert-from-tuf"
  assert_calls "modprobe overlay"
  assert_snapshot_equal "$before" "$(sys_snapshot)"
  assert_nothing_outside
}

@test "failure: a TUF host with a tuf receipt is refused without the flag" {
  tuf_host "$UPPER" v2023.06.01.0 v2023.06.01.0
  local before
  before=$(sys_snapshot)
  run sys_install --version "$V1"
  assert_failure_with "already installed from TUF"
  assert_failure_with "--convert-from-tuf"
  assert_snapshot_equal "$before" "$(sys_snapshot)"
}

@test "system: --convert-from-tuf installs from GitHub, replaces the receipt, keeps tuf.db and the TUF binaries" {
  tuf_host "$UPPER" v2023.06.01.0 v2023.06.01.0
  local tufdb
  tufdb=$(snapshot "$UPPER/etc/flynn/tuf.db")
  run sys_install --version "$V1" --convert-from-tuf
  assert_success_run
  [[ $output == *"converting this TUF host (https://dl.flynn.io/tuf) to GitHub Releases (flynn/flynn)"* ]]
  assert_calls "${INSTALL_CALLS[@]}"
  assert_system_installed "$V1"
  [[ $(json_get "$UPPER/etc/flynn/install-source.json" repository) == flynn/flynn ]]
  [[ $(snapshot "$UPPER/etc/flynn/tuf.db") == "$tufdb" ]]
  [[ -x $UPPER/usr/local/bin/flynn-host.v2023.06.01.0 ]]
}

@test "system: --convert-from-tuf on a legacy TUF host (no receipt) writes a GitHub receipt" {
  tuf_host "$UPPER" v2023.06.01.0
  run sys_install --version "$V1" --convert-from-tuf
  assert_success_run
  assert_system_installed "$V1"
  [[ -f $UPPER/etc/flynn/tuf.db ]]
}

@test "failure: --convert-from-tuf over a TUF host that ran a higher version is refused by anti-rollback" {
  tuf_host "$UPPER" v2025.01.01.0 v2025.01.01.0
  local before
  before=$(sys_snapshot)
  run sys_install --version "$V1" --convert-from-tuf
  assert_failure_with "anti-rollback"
  assert_failure_with "flynnrel install failed"
  assert_snapshot_equal "$before" "$(sys_snapshot)"
  [[ $(sys_calls) != *"systemctl enable"* ]]
  assert_nothing_outside
}

@test "failure: --remove without --yes and without a terminal is refused, nothing run or removed" {
  tuf_host "$UPPER" v2023.06.01.0 v2023.06.01.0
  local before
  before=$(sys_snapshot)
  run sys_install --remove </dev/null
  assert_failure_with "*** WARNING ***"
  assert_failure_with "there is no terminal to ask on"
  assert_failure_with "pass --yes"
  assert_calls
  assert_snapshot_equal "$before" "$(sys_snapshot)"
}

@test "failure: --clean without --yes and without a terminal is refused, nothing run or removed" {
  run sys_install --version "$V1"
  assert_success_run
  : >"$CALLS"
  local before
  before=$(sys_snapshot)
  run sys_install --clean --version "$V2" </dev/null
  assert_failure_with "pass --yes"
  assert_calls "modprobe overlay"
  assert_snapshot_equal "$before" "$(sys_snapshot)"
}

@test "system: --remove --yes stops Flynn, destroys its volumes and pool, removes its files (Flynn's do_remove)" {
  run sys_install --version "$V1"
  assert_success_run
  : >"$CALLS"
  FAKE_ZPOOL_EXISTS=1 run sys_install --remove --yes
  assert_success_run
  assert_calls "systemctl stop flynn-host" "systemctl disable flynn-host" \
    "start-stop-daemon --stop --oknodo --retry 5 --name .containerinit" \
    "zpool list -H -o name flynn-default" "zpool destroy flynn-default"
  [[ $output == *'running "/usr/local/bin/flynn-host destroy-volumes --include-data"'* ]]
  [[ $output == *'running "rm -rf /usr/local/bin/flynn '* ]]
  [[ $output == *"Flynn successfully removed"* ]]
  # Everything the install wrote is gone again: only what the test put there is left.
  local left
  left=$(find "$UPPER" \( -path "$UPPER/etc/os-release" -o -type d \) -prune -o -print)
  [[ -z $left ]] || { printf 'left after --remove:\n%s\n' "$left" >&2; false; }
  [[ ! -e $UPPER/etc/flynn && ! -e $UPPER/var/lib/flynn && ! -e $(sys_unit) ]]
  assert_nothing_outside
}

@test "system: --remove --yes on a TUF host runs its flynn-host destroy-volumes and removes tuf.db too" {
  tuf_host "$UPPER" v2023.06.01.0 v2023.06.01.0
  # shellcheck disable=SC2016 # expanded by the stub when it runs
  printf '#!/bin/sh\necho "flynn-host $*" >>"$CALLS"\n' >"$UPPER/usr/local/bin/flynn-host.v2023.06.01.0"
  run sys_install --remove --yes
  assert_success_run
  assert_calls "systemctl stop flynn-host" "systemctl disable flynn-host" \
    "start-stop-daemon --stop --oknodo --retry 5 --name .containerinit" \
    "flynn-host destroy-volumes --include-data" "zpool list -H -o name flynn-default"
  [[ ! -e $UPPER/etc/flynn && -z $(ls -A "$UPPER/usr/local/bin") ]]
}

@test "system: --clean --yes removes a GitHub install and installs again" {
  run sys_install --version "$V2"
  assert_success_run
  : >"$CALLS"
  run sys_install --clean --yes --version "$V1"
  assert_success_run
  assert_calls "modprobe overlay" "systemctl stop flynn-host" "systemctl disable flynn-host" \
    "start-stop-daemon --stop --oknodo --retry 5 --name .containerinit" \
    "zpool list -H -o name flynn-default" \
    "apt-get install --yes iptables zfsutils-linux ntp" "modprobe zfs" "systemctl enable flynn-host.service"
  assert_system_installed "$V1"
  [[ ! -e $UPPER/usr/local/bin/flynn-host.$V2 ]]
}

# on_tty INPUT ARGS...: sys_install ARGS on a pseudo-terminal (script(1)) fed INPUT.
on_tty() {
  local input=$1
  shift
  export -f sys_install sys_overlaid
  printf '%s' "$input" | SYS_KEEP_TTY=1 SHELL=/bin/bash script -qec "$(printf '%q ' sys_install "$@")" /dev/null
}

@test "tty: --remove asks on the terminal; 'no' cancels and changes nothing" {
  tuf_host "$UPPER" v2023.06.01.0 v2023.06.01.0
  local before
  before=$(sys_snapshot)
  run on_tty $'no\n' --remove
  assert_failure_with "Are you sure this is what you want?"
  assert_failure_with "cancelled"
  assert_calls
  assert_snapshot_equal "$before" "$(sys_snapshot)"
}

@test "tty: --remove asks on the terminal; 'yes' removes" {
  tuf_host "$UPPER" v2023.06.01.0 v2023.06.01.0
  run on_tty $'maybe\nyes\n' --remove
  assert_success_run
  [[ $output == *"Please type 'yes' or 'no'"* ]]
  [[ $output == *"Flynn successfully removed"* ]]
  [[ $output == *$'\033[1;32m===> '* ]] # colour on a terminal
  [[ ! -e $UPPER/etc/flynn ]]
}

@test "--root: nothing is run (no checks, apt-get, modprobe, zpool, systemctl); the unit is written under the root" {
  sys_os_release 'Debian GNU/Linux 12 (bookworm)' 12
  FAKE_UID=1000 PATH=$STUBS:$PATH run install_flynn --root "$ROOT" --version "$V1"
  assert_success_run
  assert_calls
  diff <(expected_unit) "$ROOT/lib/systemd/system/flynn-host.service"
  [[ $(stat -c %a "$ROOT/lib/systemd/system/flynn-host.service") == 644 ]]
  assert_installed "$ROOT" "$V1"
  assert_nothing_outside
}

@test "--root --remove --yes deletes only inside the root and runs nothing" {
  PATH=$STUBS:$PATH run install_flynn --root "$ROOT" --version "$V1"
  assert_success_run
  printf 'keep\n' >"$ROOT/etc/marker"
  local outside=$BATS_TEST_TMPDIR/outside
  mkdir -p "$outside"
  printf 'keep\n' >"$outside/flynn-keep"
  PATH=$STUBS:$PATH run install_flynn --root "$ROOT" --remove --yes </dev/null
  assert_success_run
  assert_calls
  [[ $(actual_tree "$ROOT" | tr '\n' '|') == 'd 755 etc|f 644 etc/marker|d 755 lib|d 755 lib/systemd|d 755 lib/systemd/system|d 755 usr|d 755 usr/local|d 755 usr/local/bin|d 755 usr/local/share|d 755 usr/local/share/man|d 755 usr/local/share/man/man1|d 755 usr/share|d 755 usr/share/bash-completion|d 755 usr/share/bash-completion/completions|d 755 var|d 755 var/lib|' ]] ||
    { actual_tree "$ROOT" >&2; false; }
  [[ -f $outside/flynn-keep ]]
  [[ $output == *"Flynn successfully removed from $ROOT"* ]]
  assert_nothing_outside
}

@test "--root --clean --yes reinstalls inside the root" {
  run install_flynn --root "$ROOT" --version "$V2"
  assert_success_run
  run install_flynn --root "$ROOT" --clean --yes --version "$V1" </dev/null
  assert_success_run
  assert_installed "$ROOT" "$V1"
}

@test "failure: --root with --zpool-create-device is refused (it would act outside the root)" {
  new_root_with_marker
  local before
  before=$(snapshot "$ROOT")
  PATH=$STUBS:$PATH run install_flynn --root "$ROOT" --version "$V1" --zpool-create-device /dev/sdz
  assert_failure_with "--zpool-create-device cannot be used with --root"
  assert_calls
  assert_snapshot_equal "$before" "$(snapshot "$ROOT")"
}

@test "failure: --root --remove on a root that does not exist is refused and creates nothing" {
  run install_flynn --root "$ROOT" --remove --yes
  assert_failure_with "$ROOT does not exist"
  [[ ! -e $ROOT ]]
}

@test "failure: --root on a TUF host is refused without --convert-from-tuf and converts with it" {
  tuf_host "$ROOT" v2023.06.01.0 v2023.06.01.0
  local before
  before=$(snapshot "$ROOT")
  run install_flynn --root "$ROOT" --version "$V1"
  assert_failure_with "Flynn is already installed under $ROOT from TUF"
  assert_failure_with "--convert-from-tuf"
  assert_snapshot_equal "$before" "$(snapshot "$ROOT")"
  run install_flynn --root "$ROOT" --version "$V1" --convert-from-tuf
  assert_success_run
  [[ $(json_get "$ROOT/etc/flynn/install-source.json" source) == github ]]
  [[ $(readlink "$ROOT/usr/local/bin/flynn-host") == "flynn-host.$V1" ]]
  [[ -f $ROOT/etc/flynn/tuf.db ]]
  assert_nothing_outside
}

@test "failure: an unreadable receipt is refused with the core's reason and the repair" {
  mkdir -p "$ROOT/etc/flynn"
  printf '{"source": "svn"}\n' >"$ROOT/etc/flynn/install-source.json"
  local before
  before=$(snapshot "$ROOT")
  run install_flynn --root "$ROOT" --version "$V1"
  assert_failure_with "its receipt $ROOT/etc/flynn/install-source.json cannot be read"
  assert_failure_with "flynnrel source set"
  assert_snapshot_equal "$before" "$(snapshot "$ROOT")"
  assert_nothing_outside
}

@test "--help lists Flynn's flags and says what --root skips" {
  run install_flynn --help
  assert_success_run
  local f
  for f in --clean --remove --yes --no-ntp --zpool-create-device --zpool-create-options \
    --convert-from-tuf --skip-os-check --root --repo --version --channel --public-key; do
    [[ $output == *"  $f"* ]] || { echo "--help lacks $f" >&2; false; }
  done
  [[ $output == *"skips the root, OS and OverlayFS checks"* ]]
  [[ $output == *"apt-get, modprobe, zpool and systemctl"* ]]
}

@test "failure: a unit that cannot be written names the path and what to do" {
  mkdir -p "$ROOT/lib"
  printf 'not a directory\n' >"$ROOT/lib/systemd"
  run install_flynn --root "$ROOT" --version "$V1"
  assert_failure_with "cannot write $ROOT/lib/systemd/system/flynn-host.service"
  assert_failure_with "Flynn is installed; write Flynn's unit there by hand"
}

# shellcheck shell=bash
# Helpers of test/e2e/installer.bats (loaded after helpers.bash): the installer run WITHOUT
# --root, on the real system paths, inside a private mount namespace, with recording stubs of
# the system commands it runs.
#
# sys_setup builds, per test:
#   $STUBS   apt-get, modprobe, zpool, systemctl, start-stop-daemon and id; each appends
#            "NAME ARG..." to $CALLS (id does not: it only answers `id -u`, with $FAKE_UID when
#            set). A stub exits 1 when its call line equals $FAIL_CALL; `zpool list … flynn-default`
#            exits 0 only when $FAKE_ZPOOL_EXISTS is 1.
#   $UPPER   the upper directories of overlay mounts over /etc, /var/lib and /usr (and /lib when
#            it is not a symlink): inside the namespace every write to those trees lands here and
#            nothing reaches the machine's real /usr/local/bin, /etc/flynn, /lib/systemd/system or
#            /var/lib/flynn. $UPPER is therefore also exactly what a run changed: `snapshot
#            "$UPPER"` (sys_snapshot, without unchanged copied-up directories) before and after a
#            failed run must be equal. $UPPER/etc/os-release is the
#            OS the installer sees (Ubuntu 18.04 unless sys_os_release says otherwise).
#
# sys_install ARGS... runs script/install-flynn-github with ARGS in that namespace, with $STUBS
# first on PATH (and no /usr/local/bin on it). mount, umount and the overlay check are real:
# they act inside the namespace only.

# sys_setup: stubs, the overlay upper/work folders and the default os-release.
sys_setup() {
  STUBS=$BATS_TEST_TMPDIR/stubs CALLS=$BATS_TEST_TMPDIR/calls.log
  UPPER=$BATS_TEST_TMPDIR/system OVERLAY_WORK=$BATS_TEST_TMPDIR/overlay-work
  export STUBS CALLS UPPER OVERLAY_WORK
  unset FAKE_UID FAIL_CALL FAKE_ZPOOL_EXISTS
  mkdir -p "$STUBS"
  : >"$CALLS"
  local name
  for name in apt-get modprobe zpool systemctl start-stop-daemon; do
    cat >"$STUBS/$name" <<'EOF'
#!/usr/bin/env bash
# A recording stub (test/e2e/installer-helpers.bash).
line="$(basename "$0")${*:+ $*}"
printf '%s\n' "$line" >>"$CALLS"
[[ $line != "${FAIL_CALL:-}" ]] || exit 1
if [[ $line == "zpool list -H -o name flynn-default" ]]; then
  [[ ${FAKE_ZPOOL_EXISTS:-0} == 1 ]] && { echo flynn-default; exit 0; }
  echo "cannot open 'flynn-default': no such pool" >&2
  exit 1
fi
exit 0
EOF
    chmod 0755 "$STUBS/$name"
  done
  cat >"$STUBS/id" <<'EOF'
#!/usr/bin/env bash
# `id -u` answers $FAKE_UID when set (test/e2e/installer-helpers.bash); the rest is the real id.
if [[ $* == "-u" && -n ${FAKE_UID:-} ]]; then echo "$FAKE_UID"; exit 0; fi
exec /usr/bin/id "$@"
EOF
  chmod 0755 "$STUBS/id"
  local d
  for d in $(sys_overlaid); do
    mkdir -p "$UPPER$d" "$OVERLAY_WORK$d"
  done
  sys_os_release 'Ubuntu 18.04.6 LTS' 18.04
}

# sys_overlaid: the system trees overlaid in the namespace.
sys_overlaid() {
  echo /etc /var/lib /usr
  [[ -L /lib ]] || echo /lib
}

# sys_os_release PRETTY_NAME VERSION_ID: the os-release the installer sees.
sys_os_release() {
  printf 'NAME="%s"\nPRETTY_NAME="%s"\nVERSION_ID="%s"\n' "${1%% *}" "$1" "$2" >"$UPPER/etc/os-release"
}

# sys_install ARGS...: the installer without --root, in a private mount namespace (see above),
# in a new session without a controlling terminal (setsid), so that the script never finds a
# terminal to ask on even when the tests run in one; SYS_KEEP_TTY=1 keeps the caller's terminal.
sys_install() {
  local detach=(setsid -w)
  [[ -z ${SYS_KEEP_TTY:-} ]] || detach=()
  # shellcheck disable=SC2016 # expanded by the inner bash
  "${detach[@]}" unshare --mount --propagation private -- bash -c '
    set -e
    for d in $1; do
      mount -t overlay overlay -o "lowerdir=$d,upperdir=$UPPER$d,workdir=$OVERLAY_WORK$d" "$d"
    done
    shift
    PATH=$STUBS:/usr/sbin:/usr/bin:/sbin:/bin exec bash "$INSTALLER" "$@"
  ' _ "$(sys_overlaid | tr '\n' ' ')" "$@"
}

# sys_snapshot: what the runs changed on the (namespaced) system: $UPPER's snapshot without the
# directories overlayfs copied up unchanged (a directory of the real system, same mode, whose
# files changed only for a while, e.g. a temp file created and removed again).
sys_snapshot() {
  local type mode size sha target path
  snapshot "$UPPER" | while read -r type mode size sha target path; do
    if [[ $type == d && $path != . && -d /$path && ! -L /$path && $(stat -c %a "/$path") == "$mode" ]]; then
      continue
    fi
    printf '%s %s %s %s %s %s\n' "$type" "$mode" "$size" "$sha" "$target" "$path"
  done
}

# sys_calls: the recorded calls, one a line.
sys_calls() { cat "$CALLS"; }

# assert_calls LINE...: the recorded calls are exactly LINE..., in this order.
assert_calls() {
  local want
  want=$(printf '%s\n' "$@")
  if [[ $(sys_calls) != "${want%$'\n'}" ]]; then
    echo "the system commands run differ (< expected, > actual):" >&2
    diff <(printf '%s\n' "$@") "$CALLS" >&2 || true
    return 1
  fi
}

# tuf_host ROOT VERSION [RECEIPT-VERSION]: a host as Flynn's install-flynn leaves it
# (flynn-host download: versioned binaries and symlinks, tuf.db, channel.txt); with
# RECEIPT-VERSION also a `tuf` receipt naming that version ("" for none).
tuf_host() {
  local root=$1 v=$2 b
  mkdir -p "$root/usr/local/bin" "$root/etc/flynn" "$root/var/lib/flynn"
  for b in flynn-host flynn-init flynn-linux-amd64; do
    printf '#!/bin/sh\necho %s\n' "$v" >"$root/usr/local/bin/$b.$v"
    chmod 0755 "$root/usr/local/bin/$b.$v"
    ln -s "$b.$v" "$root/usr/local/bin/$b"
  done
  ln -s flynn-linux-amd64 "$root/usr/local/bin/flynn"
  printf 'tuf database of the TUF install\n' >"$root/etc/flynn/tuf.db"
  echo stable >"$root/etc/flynn/channel.txt"
  if (($# > 2)); then
    printf '{"source": "tuf", "repository": "https://dl.flynn.io/tuf", "version": "%s", "installed_at": "2024-01-01T10:00:00Z"}\n' \
      "$3" >"$root/etc/flynn/install-source.json"
  fi
}

# expected_unit: Flynn's flynn-host.service, as upstream's script/install-flynn.tmpl writes it.
expected_unit() {
  cat <<'EOF'
[Unit]
Description=Flynn host daemon
Documentation=https://flynn.io/docs
After=network.target

[Service]
Type=simple
ExecStart=/usr/local/bin/flynn-host daemon
Restart=on-failure

# set delegate yes so that systemd does not reset the cgroups of containers
Delegate=yes

# kill only the flynn-host process, not all processes in the cgroup
KillMode=process

# every container uses several fds, so make sure there are enough
LimitNOFILE=10000

[Install]
WantedBy=multi-user.target
EOF
}

# The installer also writes the unit under --root: an install's tree is the core's layout
# (helpers.bash's expected_tree) plus lib/systemd/system/flynn-host.service.
eval "helpers_$(declare -f expected_tree)"
expected_tree() {
  helpers_expected_tree "$@"
  printf '%s\n' 'd 755 lib' 'd 755 lib/systemd' 'd 755 lib/systemd/system' 'f 644 lib/systemd/system/flynn-host.service'
}

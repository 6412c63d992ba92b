# shellcheck shell=bash
# Shared helpers of the benchmarks script/bench-package and script/bench-install: logging, tool
# installation, GNU time measurements, contention accounting through /proc/stat, formatting, and
# the realistic Flynn build tree both benchmark against (cached in target/bench-package/build).
#
# Sourced, never run. The sourcing script sets BENCH_NAME (message prefix) and `set -euo pipefail`.

BENCH_NAME=${BENCH_NAME:-bench}

# ---------------------------------------------------------------------------------------------
# General helpers
# ---------------------------------------------------------------------------------------------
MiB=1048576

log() { printf '===> %s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
warn() { printf '%s: warning: %s\n' "$BENCH_NAME" "$*" >&2; }
die() {
  printf '%s: error: %s\n' "$BENCH_NAME" "$*" >&2
  exit 1
}

# first_line CMD...: the first line of a command's combined output (never fails, no SIGPIPE).
first_line() {
  local text
  text=$("$@" 2>&1 || true)
  printf '%s\n' "${text%%$'\n'*}"
}

have_gnu_time() {
  [[ -x /usr/bin/time ]] || return 1
  local v
  v=$(/usr/bin/time --version 2>&1 || true)
  [[ $v == *GNU* ]]
}

# apt_install PKG...: installs Debian packages (apt-get update once, only when called). Returns
# non-zero when not possible; callers decide whether that is fatal.
APT_UPDATED=0
apt_install() {
  if [[ $(id -u) -ne 0 ]]; then
    warn "not root: cannot install $*"
    return 1
  fi
  command -v apt-get >/dev/null 2>&1 || {
    warn "no apt-get: cannot install $*"
    return 1
  }
  if ((APT_UPDATED == 0)); then
    log "apt-get update (installing $*)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq || return 1
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# require_cmds CMD...: dies naming every missing command.
require_cmds() {
  local c missing=()
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || missing+=("$c")
  done
  ((${#missing[@]} == 0)) || die "missing tools: ${missing[*]}"
}

# file_size PATH: size in bytes.
file_size() { stat -c %s -- "$1"; }

# sha512_256 PATH: lowercase hex sha512/256 of a file.
sha512_256() {
  local line
  if [[ $HASHER == openssl ]]; then
    line=$(openssl dgst -sha512-256 -r -- "$1") || die "openssl failed on $1"
    line=${line%% *}
  else
    line=$(python3 -c 'import hashlib,sys
h=hashlib.new("sha512_256")
with open(sys.argv[1],"rb") as f:
    for b in iter(lambda: f.read(1<<20), b""):
        h.update(b)
print(h.hexdigest())' "$1") || die "python3 hashlib failed on $1"
  fi
  [[ $line =~ ^[0-9a-f]{64}$ ]] || die "bad sha512/256 output for $1: $line"
  printf '%s\n' "$line"
}

# fmt_mib BYTES / fmt_kib_mib KIB: one decimal.
fmt_mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
fmt_kib_mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
# ratio A B: A/B with three decimals ("n/a" when B is 0).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.3f", a / b }'; }
# yes_if EXPR A B: "yes" when awk's `A EXPR B` holds, else "no".
yes_if() { awk -v a="$2" -v b="$3" "BEGIN { print ((a $1 b) ? \"yes\" : \"no\") }"; }

# timed OUTFILE CMD...: runs CMD under GNU time; OUTFILE gets "WALL_S PEAK_KIB USER_S SYS_S".
# Dies on failure.
timed() {
  local tf=$1
  shift
  if ! /usr/bin/time -f '%e %M %U %S' -o "$tf" "$@"; then
    die "command failed: $* ($(tr '\n' ' ' <"$tf" 2>/dev/null || true))"
  fi
  local last
  last=$(tail -n 1 -- "$tf")
  [[ $last =~ ^[0-9.]+\ [0-9]+\ [0-9.]+\ [0-9.]+$ ]] || die "unexpected /usr/bin/time output: $last"
  printf '%s\n' "$last" >"$tf"
}


# cpu_busy_ticks: CPU time used by everything on the machine so far (clock ticks, /proc/stat).
cpu_busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }

# bench_check_platform: Linux and bash 4 or newer, or die.
bench_check_platform() {
  [[ $(uname -s) == Linux ]] || die "this benchmark runs on Linux only"
  ((BASH_VERSINFO[0] >= 4)) || die "bash 4 or newer is required"
}

# install_missing CMD:PACKAGE...: installs the Debian packages of the commands that are missing
# (CMD `time` stands for GNU time at /usr/bin/time). Never fails: callers check afterwards.
install_missing() {
  local spec cmd p to_install=()
  for spec in "$@"; do
    cmd=${spec%%:*}
    if [[ $cmd == time ]]; then
      have_gnu_time && continue
    else
      command -v "$cmd" >/dev/null 2>&1 && continue
    fi
    to_install+=("${spec#*:}")
  done
  if ((${#to_install[@]})); then
    if ! apt_install "${to_install[@]}"; then
      # Try one by one so that an unavailable optional package does not block the others.
      for p in "${to_install[@]}"; do apt_install "$p" || warn "could not install $p"; done
    fi
  fi
  return 0
}

# require_gnu_time: dies without GNU time at /usr/bin/time.
require_gnu_time() {
  have_gnu_time || die "GNU time is required at /usr/bin/time (Debian package: time)"
}

# bench_cpu_setup: checks /proc/stat and sets CLK_TCK.
CLK_TCK=100
bench_cpu_setup() {
  [[ -r /proc/stat ]] || die "/proc/stat is not readable"
  CLK_TCK=$(getconf CLK_TCK)
  [[ $CLK_TCK =~ ^[0-9]+$ && $CLK_TCK -gt 0 ]] || die "unexpected CLK_TCK $CLK_TCK"
}

# bench_tree_tools: sets HAVE_MKSQUASHFS (warning without it) and HASHER (for sha512_256).
HAVE_MKSQUASHFS=0
HASHER=openssl
bench_tree_tools() {
  HAVE_MKSQUASHFS=0
  if command -v mksquashfs >/dev/null 2>&1; then
    HAVE_MKSQUASHFS=1
  else
    warn "mksquashfs unavailable: layers will be concatenated compressed files instead of squashfs"
  fi
  if [[ $(openssl dgst -sha512-256 -r </dev/null 2>/dev/null || true) =~ ^[0-9a-f]{64} ]]; then
    HASHER=openssl
  elif python3 -c 'import hashlib; hashlib.new("sha512_256")' >/dev/null 2>&1; then
    HASHER=python3
  else
    die "need openssl with sha512-256 or python3 with hashlib sha512_256"
  fi
}

# ---------------------------------------------------------------------------------------------
# The build tree (Flynn's build/: bin/*, manifests/*.json, layers/*.squashfs)
# ---------------------------------------------------------------------------------------------
TREE_FORMAT=2 # bump when the tree recipe changes: cached trees of another format are rebuilt

# Flynn's build/bin names: the Windows CLI has no .exe there (its asset does).
BIN_NAMES=(flynn-host flynn-init flynn-linux-amd64 flynn-darwin-amd64 flynn-windows-amd64)
# Component asset names, in the order of src/release.rs COMPONENTS, with their build paths.
# shellcheck disable=SC2034 # used by the sourcing scripts
ASSETS=(flynn-host-linux-amd64.gz flynn-init-linux-amd64.gz flynn-linux-amd64.gz
  flynn-darwin-amd64.gz flynn-windows-amd64.exe.gz images.json.gz bootstrap-manifest.json.gz)
ASSET_SRCS=(bin/flynn-host bin/flynn-init bin/flynn-linux-amd64 bin/flynn-darwin-amd64
  bin/flynn-windows-amd64 manifests/images.json manifests/bootstrap-manifest.json)

# bench_tree_profile QUICK CACHE_DIR: sets PROFILE, TREE (the cached tree in CACHE_DIR), BIN_MIB
# and LAYER_RAW_MIB for the quick (QUICK=1, ~40 MB) or full (~400 MB) tree.
PROFILE=full
TREE=""
BIN_MIB=()
LAYER_RAW_MIB=()
bench_tree_profile() {
  if (($1)); then
    PROFILE=quick
    TREE="$2/build-quick"
    BIN_MIB=(8 2 5 5 5)
    LAYER_RAW_MIB=(8 8) # raw bytes staged per layer before mksquashfs
  else
    PROFILE=full
    TREE="$2/build"
    BIN_MIB=(90 20 70 60 60) # 300 MiB of ELF bytes
    LAYER_RAW_MIB=(80 100 80)
  fi
}

# Scratch space of the tree builder (the caller's run directory); set by ensure_build_tree.
TREE_SCRATCH=""
# The tree being built; the caller's exit trap removes it when set (an interrupted build).
TREE_TMP=""


# Every regular file >= 16 KiB under the candidate roots, in a fixed order (roots in this order,
# paths sorted bytewise inside each), as NUL-terminated "DEV:INODE SIZE PATH" records.
list_elf_candidates() {
  local goroot="" root roots=()
  if command -v go >/dev/null 2>&1; then goroot=$(go env GOROOT 2>/dev/null || true); fi
  # Go toolchain binaries first: Flynn's own binaries are Go programs.
  if [[ -n $goroot ]]; then roots+=("$goroot/bin" "$goroot/pkg/tool"); fi
  roots+=(/usr/local/bin /usr/bin /usr/sbin /usr/libexec /usr/lib/x86_64-linux-gnu
    /usr/lib/aarch64-linux-gnu /usr/lib/jvm "${HOME:-/root}/.rustup/toolchains")
  for root in "${roots[@]}"; do
    [[ -d $root ]] || continue
    { find "$root" -type f -size +15k -printf '%D:%i %s %p\0' 2>/dev/null || true; } |
      LC_ALL=C sort -z -t ' ' -k3
  done
}

# next_elf: reads candidate records from fd 3 and sets ELF_PATH/ELF_SIZE to the next file that
# starts with the ELF magic and is not a duplicate (same inode, or same size: hard links and
# identical toolchain copies). Returns 1 when the candidates are exhausted.
declare -A SEEN=()
next_elf() {
  local key size path magic
  while IFS=' ' read -r -d '' key size path <&3; do
    [[ -z ${SEEN[$key]:-} && -z ${SEEN[s$size]:-} ]] || continue
    magic=""
    LC_ALL=C IFS= read -r -n 4 -d '' magic 2>/dev/null <"$path" || continue
    [[ $magic == $'\x7fELF' ]] || continue
    SEEN[$key]=1
    SEEN[s$size]=1
    ELF_PATH=$path
    ELF_SIZE=$size
    return 0
  done
  return 1
}

# make_binaries DIR: writes DIR/bin/<name> for BIN_NAMES with BIN_MIB MiB each, made of real ELF
# files concatenated (the last one cut to size); every binary starts at the start of an ELF file.
make_binaries() {
  local dir=$1 cand="$TREE_SCRATCH/elf-candidates" i dest remaining take off=0 have=0
  list_elf_candidates >"$cand"
  exec 3<"$cand"
  mkdir -p -- "$dir/bin"
  : >"$dir/.bench-sources"
  for i in "${!BIN_NAMES[@]}"; do
    dest="$dir/bin/${BIN_NAMES[i]}"
    : >"$dest"
    remaining=$((BIN_MIB[i] * MiB))
    have=0 # a fresh binary starts with a fresh ELF file
    while ((remaining > 0)); do
      if ((have == 0)); then
        next_elf || die "ran out of ELF files for ${BIN_NAMES[i]} (need $((BIN_MIB[i])) MiB)"
        have=1 off=0
      fi
      take=$((ELF_SIZE - off))
      ((take <= remaining)) || take=$remaining
      dd if="$ELF_PATH" bs=1M iflag=skip_bytes,count_bytes skip="$off" count="$take" \
        status=none >>"$dest"
      printf '%s\t%s\t%s\t%s\n' "${BIN_NAMES[i]}" "$ELF_PATH" "$off" "$take" >>"$dir/.bench-sources"
      off=$((off + take))
      remaining=$((remaining - take))
      ((off < ELF_SIZE)) || have=0
    done
    [[ $(file_size "$dest") -eq $((BIN_MIB[i] * MiB)) ]] || die "$dest has the wrong size"
    chmod 0755 -- "$dest"
  done
  exec 3<&-
}

# stage_files BUDGET_BYTES STAGE DIR...: copies files from DIRs (sorted by path) into STAGE,
# keeping their paths, until BUDGET bytes are staged.
stage_files() {
  local budget=$1 stage=$2 total=0 size path d
  shift 2
  local list="$stage.list"
  {
    while IFS=' ' read -r -d '' size path; do
      ((total < budget)) || break
      printf '%s\0' "${path#/}"
      total=$((total + size))
    done < <(
      for d in "$@"; do
        if [[ -d $d ]]; then
          find "$d" -type f -printf '%s %p\0' 2>/dev/null || true
        fi
      done | LC_ALL=C sort -z -t ' ' -k2
    )
  } >"$list"
  ((total >= MiB)) || die "found only $total bytes of files under $* for a layer"
  mkdir -p -- "$stage"
  tar -C / --null -T "$list" -cf - | tar -C "$stage" -xf -
  rm -f -- "$list"
}

# compressed_files BUDGET_BYTES OUT DIR...: concatenates existing compressed files (the fallback
# layer content when mksquashfs is unavailable).
compressed_files() {
  local budget=$1 out=$2 total=0 size path
  shift 2
  : >"$out"
  while IFS=' ' read -r -d '' size path; do
    ((total < budget)) || break
    cat -- "$path" >>"$out"
    total=$((total + size))
  done < <(
    for d in "$@"; do
      if [[ -d $d ]]; then
        find "$d" -type f \( -name '*.gz' -o -name '*.xz' -o -name '*.bz2' -o -name '*.zst' \
          -o -name '*.jar' -o -name '*.jmod' -o -name '*.zip' \) -printf '%s %p\0' 2>/dev/null ||
          true
      fi
    done | LC_ALL=C sort -z -t ' ' -k2
  )
  ((total >= MiB)) || die "found only $total bytes of compressed files under $*"
}

# layer_dirs N: the system directories layer N is made from (a Python app, docs, a JVM).
layer_dirs() {
  case $1 in
  0) printf '%s\n' /usr/lib/python3* /usr/local/lib/python3* ;;
  1) printf '%s\n' /usr/share ;;
  *) printf '%s\n' /usr/lib/jvm /usr/lib/gcc /usr/share ;;
  esac
}

# make_layers DIR: DIR/layers/<id>.squashfs, id = first 16 hex of the sha512/256; prints
# "ID LENGTH SHA512_256" per layer on stdout.
make_layers() {
  local dir=$1 i raw dirs f id len hash sq_flags=() help
  mkdir -p -- "$dir/layers"
  if ((HAVE_MKSQUASHFS)); then
    help=$(mksquashfs -help 2>&1 || true)
    sq_flags=(-noappend -all-root -no-xattrs -processors "$(nproc)")
    [[ $help != *-mkfs-time* ]] || sq_flags+=(-mkfs-time 0)
    [[ $help != *-all-time* ]] || sq_flags+=(-all-time 0)
    [[ $help != *-no-progress* ]] || sq_flags+=(-no-progress)
    [[ $help != *-quiet* ]] || sq_flags+=(-quiet)
  fi
  for i in "${!LAYER_RAW_MIB[@]}"; do
    raw=$((LAYER_RAW_MIB[i] * MiB))
    mapfile -t dirs < <(layer_dirs "$i")
    f="$dir/layers/layer$i.tmp"
    if ((HAVE_MKSQUASHFS)); then
      stage_files "$raw" "$TREE_SCRATCH/stage$i" "${dirs[@]}"
      mksquashfs "$TREE_SCRATCH/stage$i" "$f" "${sq_flags[@]}" >/dev/null ||
        die "mksquashfs failed for layer $i"
      rm -rf -- "$TREE_SCRATCH/stage$i"
    else
      compressed_files $((raw / 3)) "$f" "${dirs[@]}"
    fi
    len=$(file_size "$f")
    hash=$(sha512_256 "$f")
    id=${hash:0:16}
    [[ ! -e $dir/layers/$id.squashfs ]] || die "two layers with the same content ($id)"
    mv -- "$f" "$dir/layers/$id.squashfs"
    printf '%s %s %s\n' "$id" "$len" "$hash"
  done
}

layer_entry() {
  printf '          {"id": "%s", "type": "application/vnd.flynn.image.squashfs.v1", "length": %s, "hashes": {"sha512_256": "%s"}}' \
    "$1" "$2" "$3"
}

# write_manifests DIR LAYERLINES...: images.json (image 0 = the base layer, image k = base +
# layer k) and a small bootstrap manifest.
write_manifests() {
  local dir=$1 k n sep names=(host python-app docs java-app)
  shift
  local -a ids=() lens=() hashes=()
  local line
  for line in "$@"; do
    read -r id len hash <<<"$line"
    ids+=("$id") lens+=("$len") hashes+=("$hash")
  done
  n=${#ids[@]}
  mkdir -p -- "$dir/manifests"
  {
    printf '{\n'
    for ((k = 0; k < n; k++)); do
      printf '  "%s": {\n' "${names[k]:-image$k}"
      printf '    "_type": "application/vnd.flynn.image.manifest.v1+json",\n'
      printf '    "meta": {"flynn.component": "%s", "flynn.system-image": "true"},\n' "${names[k]:-image$k}"
      printf '    "entrypoints": {"_default": {"args": ["/bin/start"], "env": {"PATH": "/usr/local/bin:/usr/bin:/bin"}}},\n'
      printf '    "rootfs": [\n      {\n        "platform": {"architecture": "amd64", "os": "linux"},\n        "layers": [\n'
      layer_entry "${ids[0]}" "${lens[0]}" "${hashes[0]}"
      if ((k > 0)); then
        printf ',\n'
        layer_entry "${ids[k]}" "${lens[k]}" "${hashes[k]}"
      fi
      sep=","
      ((k < n - 1)) || sep=""
      printf '\n        ]\n      }\n    ]\n  }%s\n' "$sep"
    done
    printf '}\n'
  } >"$dir/manifests/images.json"
  cat >"$dir/manifests/bootstrap-manifest.json" <<'EOF'
[
  {"id": "online-hosts", "action": "wait-hosts"},
  {"id": "discoverd", "action": "run-app", "app": {"name": "discoverd"}, "release": {"processes": {"app": {"args": ["/bin/discoverd"]}}}},
  {"id": "flannel", "action": "run-app", "app": {"name": "flannel"}},
  {"id": "postgres", "action": "run-app", "app": {"name": "postgres"}},
  {"id": "controller", "action": "run-app", "app": {"name": "controller"}},
  {"id": "router", "action": "run-app", "app": {"name": "router"}},
  {"id": "status", "action": "status-check", "url": "http://status-web.discoverd"}
]
EOF
}

tree_descriptor() {
  printf 'bench-package tree format=%s profile=%s bins=%s layers=%s squashfs=%s\n' \
    "$TREE_FORMAT" "$PROFILE" "${BIN_MIB[*]}" "${LAYER_RAW_MIB[*]}" "$HAVE_MKSQUASHFS"
}

tree_is_valid() {
  local t=$1 b
  [[ -f $t/.bench-tree && $(cat -- "$t/.bench-tree") == "$(tree_descriptor)" ]] || return 1
  for b in "${ASSET_SRCS[@]}"; do [[ -f $t/$b ]] || return 1; done
  compgen -G "$t/layers/*.squashfs" >/dev/null
}

# ensure_build_tree SCRATCH: builds TREE (bench_tree_profile) unless a valid cached one exists.
# SCRATCH is a private directory for temporary files. The caller holds the cache's lock.
ensure_build_tree() {
  TREE_SCRATCH=$1
  local layer_lines=()
  if tree_is_valid "$TREE"; then
    log "reusing the cached build tree $TREE"
  else
    log "building the $PROFILE build tree in $TREE (cached for later runs)"
    rm -rf -- "$TREE"
    TREE_TMP="$TREE.tmp.$$"
    rm -rf -- "$TREE_TMP"
    mkdir -p -- "$TREE_TMP"
    make_binaries "$TREE_TMP"
    make_layers "$TREE_TMP" >"$TREE_SCRATCH/layers.txt"
    mapfile -t layer_lines <"$TREE_SCRATCH/layers.txt"
    ((${#layer_lines[@]} == ${#LAYER_RAW_MIB[@]})) || die "layer creation failed"
    write_manifests "$TREE_TMP" "${layer_lines[@]}"
    tree_descriptor >"$TREE_TMP/.bench-tree"
    mv -- "$TREE_TMP" "$TREE"
    TREE_TMP=""
  fi
}

# Helpers for the guest tests (tests/guest/*.sh).  Source it from a test:
#     . "$(dirname "$0")/../lib/common.sh"
# Runs inside the virtme-ng guest (root, no udev).  Everything a test sets up
# through these helpers is torn down by `cleanup_all`, which the test should
# call from an EXIT trap (`trap cleanup_all EXIT` is installed here already;
# a test that sets its own EXIT trap must call cleanup_all itself).

TESTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO="${REPO:-$(cd "$TESTS_DIR/.." && pwd)}"
# Our module; override with DMTHIN_KO=/path/to/dm_thin_rs.ko.
DMTHIN_KO="${DMTHIN_KO:-$REPO/dm_thin_rs.ko}"
DMTHIN_SCRATCH="${DMTHIN_SCRATCH:-/run/dmthin-scratch}"
export DM_DISABLE_UDEV=1
export LC_ALL=C

# Every process started costs 0.1-0.3 s in the guest (software emulation,
# with lockdep checking each of the ~12,000 locks a fork and exec take):
# the helpers below use shell builtins where they can.

# python3 without the site module and the user's environment (-I -S): it
# starts in about a third of the time (site alone imports dozens of
# modules).  The tests' Python uses the standard library only.
python3() { command python3 -I -S "$@"; }

_LOOPS=()     # loop devices made by make_loop
_DMDEVS=()    # dm devices made through dm_create (removed in reverse order)
_FILES=()     # backing files of those loop devices

log()  { echo "# $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
# assert <description> <command...>: run the command, fail the test if it fails.
assert() { local d="$1"; shift; "$@" || fail "$d (command: $*)"; }

# dmsetup without udev: libdevmapper makes the /dev/mapper nodes itself.
dms() { DM_DISABLE_UDEV=1 dmsetup --noudevsync "$@"; }

# dm_create <name> <table>: dmsetup create, and remember the device for cleanup.
dm_create() {
    local name="$1" table="$2"
    dms create "$name" --table "$table" || return $?
    _DMDEVS+=("$name")
}
# dm_remove <name>: remove a dm device (retrying while it is briefly busy).
dm_remove() {
    local name="$1" i
    for i in 1 2 3 4 5; do
        dms remove "$name" 2>/dev/null && return 0
        dms info "$name" >/dev/null 2>&1 || return 0
        sleep 0.5
    done
    dms remove "$name"
}

# scratch_init: a tmpfs for backing files (guest-entry.sh mounts one already).
scratch_init() {
    mkdir -p "$DMTHIN_SCRATCH"
    local _ mp
    while read -r _ mp _; do [ "$mp" = "$DMTHIN_SCRATCH" ] && return 0; done < /proc/mounts
    mount -t tmpfs -o size=1200M tmpfs "$DMTHIN_SCRATCH"
}

# make_loop <var> <name> <size_mb>: make a loop device over a zero-filled
# tmpfs file and store its path (e.g. /dev/loop0) in variable <var>.  (Not
# used as $(make_loop ...): the cleanup list must be kept in this shell.)
make_loop() {
    local _var="$1" _name="$2" _mb="$3" _f _dev
    scratch_init
    _f="$DMTHIN_SCRATCH/$_name.img"
    rm -f "$_f"
    truncate -s "${_mb}M" "$_f" || return 1
    _dev=$(losetup --find --show "$_f") || return 1
    _LOOPS+=("$_dev"); _FILES+=("$_f")
    printf -v "$_var" '%s' "$_dev"
}

# zero_dev <dev> [mb]: zero the start of a device (default: 1 MiB).
zero_dev() { dd if=/dev/zero of="$1" bs=1M count="${2:-1}" oflag=direct status=none; }

# dev_sectors <dev>: size in 512-byte sectors.
dev_sectors() { blockdev --getsz "$1"; }
# dev_majmin <dev>: "major:minor" of a block device.
dev_majmin() { lsblk -dno MAJ:MIN "$1" | tr -d ' '; }

# Which dm-thin implementation is loaded: prints "ours", "upstream" or "none".
thin_loaded() {
    local m _ which=none
    while read -r m _; do
        case "$m" in
            dm_thin_rs) which=ours; break ;;
            dm_thin_pool) which=upstream ;;
        esac
    done < /proc/modules
    echo "$which"
}

# unload_thin: remove whichever dm-thin module is loaded (ours or upstream).
unload_thin() {
    local i
    for i in 1 2 3 4 5; do
        case "$(thin_loaded)" in
            ours) rmmod dm_thin_rs 2>/dev/null || true ;;
            upstream) rmmod dm_thin_pool 2>/dev/null || true ;;
            none) return 0 ;;
        esac
        [ "$(thin_loaded)" = none ] && return 0
        sleep 0.5
    done
    echo "unload_thin: could not unload $(thin_loaded)" >&2
    return 1
}

# load_upstream: upstream's C dm-thin-pool (unloads ours first).
load_upstream() {
    [ "$(thin_loaded)" = ours ] && { unload_thin || return 1; }
    modprobe dm-thin-pool || return 1
    [ "$(thin_loaded)" = upstream ]
}

# load_ours: our Rust module (unloads upstream first).  Fails with
# "module not built" if the .ko is missing.
load_ours() {
    if [ ! -f "$DMTHIN_KO" ]; then
        echo "module not built: $DMTHIN_KO" >&2
        return 1
    fi
    [ "$(thin_loaded)" = upstream ] && { unload_thin || return 1; }
    [ "$(thin_loaded)" = ours ] && return 0
    modprobe dm-bufio || return 1
    modprobe libcrc32c || return 1
    insmod "$DMTHIN_KO" || return 1
    [ "$(thin_loaded)" = ours ]
}

# target_version <name>: the version `dmsetup targets` lists for a target
# (e.g. "v1.23.0"), or nothing.
target_version() { dms targets | awk -v t="$1" '$1 == t { print $2 }'; }

# thin_check_dev <metadata dev>: thin_check the metadata, output on failure.
thin_check_dev() {
    local out
    if ! out=$(thin_check "$1" 2>&1); then
        echo "thin_check $1 failed:" >&2
        echo "$out" >&2
        return 1
    fi
}

# pool_teardown <pool name> <metadata dev>: remove the pool device, then
# thin_check its metadata.  Remove the pool's thins first.
pool_teardown() {
    dm_remove "$1" || return 1
    thin_check_dev "$2"
}

# Kernel log marks.  kmsg_mark prints a mark id and writes it into the kernel
# log; kmsg_since <id> prints the log lines after that mark (no timestamps).
# (The guest boots with printk.devkmsg=on so marks are never rate-limited.)
kmsg_mark() {
    local id="dmthin-mark-$BASHPID-${EPOCHREALTIME/./}"
    echo "$id" > /dev/kmsg
    echo "$id"
}
kmsg_since() {
    # From the LAST line carrying the mark (a mark is unique, but be safe).
    dmesg --notime 2>/dev/null | awk -v m="$1" '
        index($0, m) { n = 0; f = 1; next }
        f { buf[n++] = $0 }
        END { for (i = 0; i < n; i++) print buf[i] }'
}

# Cheap per-step kernel-log capture for tests that check the log after
# every command (no process is started per step): klog_start runs one
# `cat /dev/kmsg` into a file and reads it through fd 7; klog_take puts
# the kernel log lines printed since the previous klog_take (or klog_start)
# into the array KLOG_LINES, exactly: it writes a sync mark into the log and
# reads up to it.  klog_stop ends the reader.
_KLOG_PID=""; _KLOG_N=0; _KLOG_PART=""
klog_start() {
    local f="$DMTHIN_SCRATCH/klog-$BASHPID.txt"
    scratch_init
    : > "$f"
    cat /dev/kmsg >> "$f" &
    _KLOG_PID=$!
    exec 7< "$f"
    exec 8<> <(:)    # a pipe nobody writes: `read -t` on it is a builtin sleep
    _KLOG_N=0; _KLOG_PART=""
    klog_take    # skip everything logged before now
}
klog_take() {
    local m line tries=0
    _KLOG_N=$((_KLOG_N + 1))
    m="dmthin-sync-$BASHPID-$_KLOG_N"
    echo "$m" > /dev/kmsg
    KLOG_LINES=()
    while :; do
        if IFS= read -r -u 7 line; then
            line="$_KLOG_PART$line"; _KLOG_PART=""
            case "$line" in " "*) continue ;; esac   # /dev/kmsg key=value lines
            line="${line#*;}"
            [ "$line" = "$m" ] && return 0
            KLOG_LINES+=("$line")
        else
            _KLOG_PART="$_KLOG_PART$line"
            tries=$((tries + 1))
            [ "$tries" -le 1000 ] || { echo "klog_take: sync mark not seen" >&2; return 1; }
            read -r -t 0.01 -u 8 _ || true
        fi
    done
}
klog_stop() {
    [ -n "$_KLOG_PID" ] && kill "$_KLOG_PID" 2>/dev/null
    wait "$_KLOG_PID" 2>/dev/null
    exec 7<&- 8<&-
    rm -f "$DMTHIN_SCRATCH/klog-$BASHPID.txt"
    _KLOG_PID=""
}

# Splat detection on kernel log text (stdin): prints the offending lines and
# returns 0 if there is a splat.  Tolerated noise: the out-of-tree taint line
# and WRITE_ZEROES errors from mkfs on tmpfs-backed loop devices.
SPLAT_RE='BUG:|kernel BUG|WARNING:|Oops|general protection fault|Kernel panic|possible recursive locking|circular locking|inconsistent lock state|INFO: lockdep|suspicious RCU|sleeping function called from invalid context|scheduling while atomic|UBSAN:|KASAN:|panicked at|blocked for more than|stack-protector|list_add corruption|list_del corruption|refcount_t:|ODEBUG:'
NOISE_RE='taints kernel|WRITE_ZEROES|dmthin-mark-|dmthin-sync-'
find_splats() { grep -v -E "$NOISE_RE" | grep -E "$SPLAT_RE"; }

# Cleanup of everything made through these helpers; runs at exit.
cleanup_all() {
    local i
    for ((i = ${#_DMDEVS[@]} - 1; i >= 0; i--)); do
        dms info "${_DMDEVS[$i]}" >/dev/null 2>&1 && dm_remove "${_DMDEVS[$i]}" >/dev/null 2>&1
    done
    _DMDEVS=()
    for i in "${_LOOPS[@]}"; do losetup -d "$i" 2>/dev/null; done
    for i in "${_FILES[@]}"; do rm -f "$i"; done
    _LOOPS=(); _FILES=()
    [ -z "$_KLOG_PID" ] || klog_stop
    true
}
trap cleanup_all EXIT

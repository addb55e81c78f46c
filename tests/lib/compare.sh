# Differential scenarios: the same scenario run once per dm-thin
# implementation in one guest boot, every observable output recorded, and
# the records diffed against the first implementation's (the oracle,
# upstream by default).  Source after common.sh:
#     . "$(dirname "$0")/../lib/common.sh"
#     . "$(dirname "$0")/../lib/compare.sh"
#     cmp_init "$@"                   # which implementations (see below)
#     scenario() { ...cmp_* steps... }
#     cmp_run scenario [args]         # once per implementation
#     cmp_finish                      # diff the records; exits
#
# Implementations (first source that is set wins), each word "upstream"
# or "ours", repeats allowed ("upstream upstream" compares upstream with
# itself, which checks the test's determinism):
#   1. the test script's arguments (qemu/run-guest.sh tests/guest/10-x.sh upstream)
#   2. DMTHIN_IMPLS in the guest's environment (a wrapper script can set it)
#   3. $OUTDIR/dmthin-impls, written on the HOST by the test's header line
#      "# host-prepare: printf '%s\n' "${DMTHIN_IMPLS:-}" > "$OUTDIR/dmthin-impls""
#      so `DMTHIN_IMPLS=upstream scripts/guest-tests.sh pool-` works (the guest
#      does not inherit the host's environment)
#   4. default "upstream ours"
#
# Each run happens in a subshell with a fresh module load: its devices are
# made inside it (make_loop/cmp_loop, dm_create) and torn down when it ends,
# also when a required step aborts it (cmp_must).  The record of run N is
# $CMP_WORK/N-<impl>/record: for every step the command, its exit status,
# stdout, stderr and the kernel log lines it produced, plus md5sums, status
# lines, thin_check output and thin_dump output.  Device numbers and names
# registered with cmp_dev are replaced by their role ({meta}, {pool}, ...),
# any other major:minor, dm-N or loopN by a generic token.  Checks
# (cmp_check, cmp_ok, cmp_fails) fail the test in any run; a diff between
# the oracle's record and another run's fails it too, the diff printed.
# With OUTDIR set, the records are copied to $OUTDIR/<test>-compare/ (with
# each run's `timing`: milliseconds per step, not compared).  Many device
# operations can run in one python3 process: cmp_op / cmp_batch below.

# Kernel messages unrelated to the step (timekeeping under software
# emulation, once-per-boot notices): left out of the records.
CMP_UNRELATED_RE='clocksource:|hrtimer: interrupt took|perf: interrupt took|sched: RT throttling|random: |workqueue: .* hogged CPU|block device autoloading is deprecated|callbacks suppressed|used greatest stack depth|loop[0-9]+: detected capacity change'

CMP_IMPLS=(); CMP_IMPLS_FROM=""; CMP_WORK=""; CMP_INPUTS=""; CMP_BAD=0; CMP_NAME=""
CMP_IMPL=""; CMP_DIR=""; CMP_RC=0; CMP_OUT=(); CMP_ERR=(); CMP_KLOG=()

# cmp_init [impl...]: choose the implementations, make the work directory.
cmp_init() {
    local v="" w
    if [ $# -gt 0 ]; then v="$*"; CMP_IMPLS_FROM="arguments"
    elif [ -n "${DMTHIN_IMPLS:-}" ]; then v="$DMTHIN_IMPLS"; CMP_IMPLS_FROM="DMTHIN_IMPLS"
    elif [ -n "${OUTDIR:-}" ] && [ -s "$OUTDIR/dmthin-impls" ]; then
        read -r v < "$OUTDIR/dmthin-impls" || true
        CMP_IMPLS_FROM="host DMTHIN_IMPLS via \$OUTDIR/dmthin-impls"
    fi
    if [ -z "${v// /}" ]; then v="upstream ours"; CMP_IMPLS_FROM="default"; fi
    CMP_IMPLS=()
    for w in $v; do
        case "$w" in
            upstream|ours) CMP_IMPLS+=("$w") ;;
            *) fail "unknown implementation '$w' (from $CMP_IMPLS_FROM): use upstream and/or ours" ;;
        esac
    done
    CMP_NAME=$(basename "$0" .sh)
    CMP_WORK="$DMTHIN_SCRATCH/compare-$CMP_NAME"
    CMP_INPUTS="$DMTHIN_SCRATCH/inputs-$CMP_NAME"   # inputs shared by the runs
    scratch_init
    rm -rf "$CMP_WORK" "$CMP_INPUTS"; mkdir -p "$CMP_WORK" "$CMP_INPUTS"
    log "implementations: ${CMP_IMPLS[*]} (from $CMP_IMPLS_FROM); oracle: ${CMP_IMPLS[0]}"
}

# ---- inside a run ---------------------------------------------------------

# cmp_rec <text>: append a line to the current run's record.
cmp_rec() { printf '%s\n' "$*" >&9; }

# cmp__klog <prefix>: record the kernel log lines since the last take.
cmp__klog() {
    local l t0=$EPOCHREALTIME
    klog_take || { cmp_rec "$1: (klog_take failed)"; return; }
    printf '%s klog\n' "$(( ${EPOCHREALTIME/./} / 1000 - ${t0/./} / 1000 ))ms" >> "$CMP_DIR/timing"
    CMP_KLOG=()
    for l in "${KLOG_LINES[@]}"; do
        [[ "$l" =~ $CMP_UNRELATED_RE ]] && continue
        [[ "$l" == dmthin-* ]] && continue     # marks (cmp_batch's)
        CMP_KLOG+=("$l")
        printf '%s: %s\n' "$1" "$l" >&9
    done
}

# cmp_step <label> <command...>: run a command (or shell function) and
# record it: "== label", the command, rc, stdout, stderr, kernel lines.
# Its stdout/stderr lines are left in CMP_OUT/CMP_ERR, rc in CMP_RC (also
# the return status).  Kernel lines logged between steps are recorded as
# "kernel (before <label>)".
cmp_step() {
    local label="$1" l; shift
    cmp__klog "kernel (before $label)"
    cmp_rec "== $label"
    cmp_rec "\$ $*"
    CMP_RC=0
    local t0=$EPOCHREALTIME
    "$@" > "$CMP_DIR/.out" 2> "$CMP_DIR/.err" < /dev/null || CMP_RC=$?
    printf '%s %s\n' "$(( ${EPOCHREALTIME/./} / 1000 - ${t0/./} / 1000 ))ms" "$label" >> "$CMP_DIR/timing"
    cmp__klog kernel
    cmp_rec "rc=$CMP_RC"
    CMP_OUT=(); CMP_ERR=()
    while IFS= read -r l || [ -n "$l" ]; do CMP_OUT+=("$l"); printf 'out: %s\n' "$l" >&9; done < "$CMP_DIR/.out"
    while IFS= read -r l || [ -n "$l" ]; do CMP_ERR+=("$l"); printf 'err: %s\n' "$l" >&9; done < "$CMP_DIR/.err"
    return "$CMP_RC"
}

# cmp_random <seed> <file> <bytes> [<file> <bytes>...]: deterministic
# pseudo-random files, all made by one python3 process (under software
# emulation /dev/urandom gives well under 1 MiB/s; this is much faster).
cmp_random() {
    python3 -c '
import random, sys
r = random.Random(int(sys.argv[1]))
a = sys.argv[2:]
for i in range(0, len(a), 2):
    with open(a[i], "wb") as f:
        f.write(r.randbytes(int(a[i + 1])))
' "$@"
}

# cmp__failed <description>: note a failed check of this run.
cmp__failed() {
    cmp_rec "CHECK FAILED: $1"
    echo "FAIL [$CMP_IMPL]: $1"
    printf '%s\n' "$1" >> "$CMP_DIR/failed"
}

# cmp_check <description> <command...>: the command must succeed (it is
# not recorded itself: use it for assertions).  Records the outcome.
cmp_check() {
    local d="$1"; shift
    local t0=$EPOCHREALTIME r=0
    "$@" || r=$?
    printf '%s %s\n' "$(( ${EPOCHREALTIME/./} / 1000 - ${t0/./} / 1000 ))ms" "check: $d" >> "$CMP_DIR/timing"
    if [ "$r" = 0 ]; then cmp_rec "check ok: $d"; return 0; fi
    cmp__failed "$d"
    return 1
}

# cmp_ok <label> <command...>: cmp_step, and rc must be 0.
cmp_ok() {
    cmp_step "$@" && return 0
    cmp__failed "$1: exit $CMP_RC: ${CMP_ERR[*]:0:3}"
    return 1
}

# cmp_must <label> <command...>: cmp_step, and rc must be 0, else the run
# is aborted (its devices are torn down; the other runs still happen).
cmp_must() {
    cmp_step "$@" && return 0
    cmp__failed "$1: exit $CMP_RC: ${CMP_ERR[*]:0:3} (run aborted)"
    exit 1
}

# cmp_fails <text> <label> <command...>: cmp_step; the command must fail
# and <text> must appear in its stderr or in the kernel lines it produced.
cmp_fails() {
    local want="$1" all; shift
    cmp_step "$@" && { cmp__failed "$1: succeeded, expected a failure with '$want'"; return 1; }
    all="${CMP_ERR[*]} ${CMP_KLOG[*]}"
    [[ "$all" == *"$want"* ]] && return 0
    cmp__failed "$1: failed without '$want' (stderr: ${CMP_ERR[*]:0:3}; kernel: ${CMP_KLOG[*]:0:3})"
    return 1
}

# cmp_dev <role> <device>: record the device's numbers and kernel name so
# the records name it {role} (a /dev/mapper/NAME or /dev/<kname> path).
# Reads /sys only (no process started).
cmp_dev() {
    local role="$1" path="$2" k="" d nm="" mm=""
    case "$path" in
        /dev/mapper/*)
            for d in /sys/block/dm-*; do
                [ -r "$d/dm/name" ] || continue
                read -r nm < "$d/dm/name"
                [ "$nm" = "${path#/dev/mapper/}" ] && { k=${d##*/}; break; }
            done ;;
        /dev/*) k=${path#/dev/} ;;
    esac
    if [ -z "$k" ] || [ ! -r "/sys/block/$k/dev" ]; then
        cmp__failed "cmp_dev: no block device $path"
        return 1
    fi
    read -r mm < "/sys/block/$k/dev"
    printf 's#/dev/%s\\b#{%s}#g\ns#\\b%s\\b#{%s}#g\ns#\\b%s\\b#{%s}#g\n' \
        "$k" "$role" "$k" "$role" "$mm" "$role" >> "$CMP_DIR/devmap.sed"
}

# cmp_loop <var> <name> <size_mb>: make_loop, registered as {name}.
cmp_loop() {
    make_loop "$1" "$2" "$3" || { cmp__failed "make_loop $2"; exit 1; }
    cmp_dev "$2" "${!1}"
}

# cmp_create <name> <table>: required dm_create (aborts the run on failure),
# registered as {name}.
cmp_create() {
    cmp_must "create $1" dm_create "$1" "$2"
    cmp_dev "$1" "/dev/mapper/$1"
}

# cmp_remove <name>: remove a dm device (recorded, must succeed) and drop
# it from common.sh's cleanup list (so the exit cleanup does not spend a
# dmsetup call per removed device).
cmp_remove() {
    local i keep=()
    cmp_ok "remove $1" dm_remove "$1" || return 1
    for i in "${_DMDEVS[@]}"; do [ "$i" = "$1" ] || keep+=("$i"); done
    _DMDEVS=("${keep[@]}")
}

# Status helpers: record `dmsetup status`, and parse it.
# cmp_pool_status <name> [--noflush]: sets P_TRANS P_MUSED P_MTOTAL P_DUSED
# P_DTOTAL P_HELD P_MODE P_LINE (P_LINE = the whole line).  With
# CMP_MASK_META_USED=1 the used metadata blocks are recorded as "*" (for
# concurrent I/O: the btree shapes depend on the order of provisioning).
CMP_MASK_META_USED=0
cmp__status_masked() {
    local -a f
    read -r -a f < <(dms status "$@") || return 1
    [ "${#f[@]}" -lt 5 ] || f[4]="*/${f[4]#*/}"
    printf '%s \n' "${f[*]}"
}
cmp_pool_status() {
    local x how=dms
    P_TRANS=""; P_MUSED=""; P_MTOTAL=""; P_DUSED=""; P_DTOTAL=""; P_HELD=""; P_MODE=""; P_LINE=""
    [ "$CMP_MASK_META_USED" = 1 ] && how=cmp__status_masked
    if [ "$how" = dms ]; then
        cmp_step "pool status $1${2:+ $2}" dms status ${2:-} "$1"
    else
        cmp_step "pool status $1${2:+ $2} (used metadata masked)" cmp__status_masked ${2:-} "$1"
    fi || { cmp__failed "status of $1: exit $CMP_RC"; return 1; }
    cmp_parse_pool "${CMP_OUT[0]:-}"
}
# cmp_parse_pool <status line>: sets the P_* variables from a pool status.
cmp_parse_pool() {
    local x
    P_LINE="$1"
    read -r x x x P_TRANS P_MUSED P_DUSED P_HELD P_MODE x <<< "$P_LINE"
    P_MTOTAL=${P_MUSED#*/}; P_MUSED=${P_MUSED%/*}
    P_DTOTAL=${P_DUSED#*/}; P_DUSED=${P_DUSED%/*}
    return 0
}
# cmp_thin_status <name>: sets T_MAPPED (sectors) T_HIGHEST (or -) T_LINE.
cmp_thin_status() {
    local x
    T_MAPPED=""; T_HIGHEST=""; T_LINE=""
    cmp_step "thin status $1" dms status "$1" || { cmp__failed "status of $1: exit $CMP_RC"; return 1; }
    cmp_parse_thin "${CMP_OUT[0]:-}"
}
# cmp_parse_thin <status line>: sets T_MAPPED T_HIGHEST T_LINE.
cmp_parse_thin() {
    local x
    T_LINE="$1"
    read -r x x x T_MAPPED T_HIGHEST <<< "$T_LINE"
    return 0
}

# cmp_events <dm name>: its event number (`dmsetup info`).
cmp_events() { dms info -c --noheadings -o events "$1" | tr -d ' '; }
# wait_bounded <seconds>: the background process $WAIT_PID ends within
# <seconds> (killed otherwise) with status 0.
wait_bounded() {
    local i
    for ((i = 0; i < $1 * 5; i++)); do
        kill -0 "$WAIT_PID" 2>/dev/null || { wait "$WAIT_PID"; return; }
        sleep 0.2
    done
    kill "$WAIT_PID" 2>/dev/null; wait "$WAIT_PID" 2>/dev/null
    echo "still waiting after $1 s"; return 1
}

# cmp_md5 <label> <file or device>: record its md5sum, left in CMP_MD5.
cmp_md5() {
    local h="" rest t0=$EPOCHREALTIME
    read -r h rest < <(md5sum "$2" 2>&1)
    printf '%s %s\n' "$(( ${EPOCHREALTIME/./} / 1000 - ${t0/./} / 1000 ))ms" "md5 $1" >> "$CMP_DIR/timing"
    CMP_MD5="$h"
    cmp_rec "md5 $1: $h"
}

# Summary of a thin_dump (awk program).  Prints, per device, the mapped
# blocks the dump claims and the mappings it holds, then totals: mappings
# (all devices) and distinct data blocks.  With mode=virt also the
# device's mapped virtual ranges (data block numbers left out: they depend
# on the order concurrent I/O was provisioned in).
CMP_DUMP_AWK='
function attr(s, name,   r) {
    r = name "=\"[^\"]*\""
    if (match(s, r)) return substr(s, RSTART + length(name) + 2, RLENGTH - length(name) - 3)
    return ""
}
function flush_range() { if (vlen > 0) ranges = ranges " " vstart "+" vlen; vlen = 0 }
function add(o, d, n,   i) {
    count[dev] += n; total += n
    for (i = 0; i < n; i++) if (!((d + i) in seen)) { seen[d + i] = 1; distinct++ }
    if (vlen > 0 && o == vstart + vlen) vlen += n
    else { flush_range(); vstart = o; vlen = n }
}
/<device / { dev = attr($0, "dev_id"); claimed[dev] = attr($0, "mapped_blocks"); order[nd++] = dev; count[dev] = 0; ranges = ""; vlen = 0 }
/<range_mapping / { add(attr($0, "origin_begin") + 0, attr($0, "data_begin") + 0, attr($0, "length") + 0) }
/<single_mapping / { add(attr($0, "origin_block") + 0, attr($0, "data_block") + 0, 1) }
/<\/device>/ { flush_range(); vr[dev] = ranges }
END {
    for (i = 0; i < nd; i++) {
        d = order[i]
        printf "device %s mapped_blocks=%s mappings=%d\n", d, claimed[d], count[d]
        if (mode == "virt") printf "device %s virtual:%s\n", d, vr[d]
    }
    printf "total devices=%d mappings=%d distinct_data_blocks=%d\n", nd, total, distinct
}'

# cmp_dump <label> <metadata dev> [full|virt]: thin_dump the metadata and
# record it: "full" (default) records the whole XML, "virt" only the
# summary with virtual ranges.  The summary is recorded in both modes and
# left in CMP_DUMP (lines); D_DEVICES D_MAPPINGS D_DISTINCT are set from
# its totals, and the dump is kept in $CMP_DIR/<label>.xml.
cmp_dump() {
    local label="$1" meta="$2" mode="${3:-full}" f="$CMP_DIR/$1.xml" l x
    cmp__klog "kernel (before thin_dump $label)"
    cmp_rec "== thin_dump $label"
    if ! thin_dump "$meta" > "$f" 2> "$CMP_DIR/.err"; then
        while IFS= read -r l; do cmp_rec "err: $l"; done < "$CMP_DIR/.err"
        cmp__failed "thin_dump $label"
        return 1
    fi
    if [ "$mode" = full ]; then
        while IFS= read -r l; do printf 'dump: %s\n' "$l" >&9; done < "$f"
    fi
    CMP_DUMP=()
    while IFS= read -r l; do CMP_DUMP+=("$l"); printf 'dump summary: %s\n' "$l" >&9; done \
        < <(awk -v mode="$mode" "$CMP_DUMP_AWK" "$f")
    read -r x D_DEVICES D_MAPPINGS D_DISTINCT <<< "${CMP_DUMP[${#CMP_DUMP[@]}-1]}"
    D_DEVICES=${D_DEVICES#*=}; D_MAPPINGS=${D_MAPPINGS#*=}; D_DISTINCT=${D_DISTINCT#*=}
}

# cmp_teardown <pool> <metadata dev> [dump mode|none]: remove the pool,
# thin_check its metadata (output recorded, must pass), then cmp_dump
# (label "<pool>-N", N counting teardowns in this run) unless "none".
CMP_TEARDOWNS=0
cmp_teardown() {
    CMP_TEARDOWNS=$((CMP_TEARDOWNS + 1))
    cmp_remove "$1" || return 1
    cmp_ok "thin_check after removing $1" thin_check "$2" || return 1
    [ "${3:-full}" = none ] || cmp_dump "$1-$CMP_TEARDOWNS" "$2" "${3:-full}"
}

# cmp_mount <device> <dir> [mount options...]: required mount (recorded),
# unmounted by the run's exit cleanup if the run is aborted.
CMP_MOUNTS=()
cmp_mount() {
    local dev="$1" dir="$2"; shift 2
    mkdir -p "$dir"
    cmp_must "mount ${dev##*/}" mount "$@" "$dev" "$dir"
    CMP_MOUNTS+=("$dir")
}
# cmp_umount <dir>: umount (recorded, must succeed).
cmp_umount() {
    local i keep=()
    cmp_ok "umount" umount "$1" || return 1
    for i in "${CMP_MOUNTS[@]}"; do [ "$i" = "$1" ] || keep+=("$i"); done
    CMP_MOUNTS=("${keep[@]}")
}
# The run's exit cleanup: unmount, remove the run's dm devices that still
# exist (one `dmsetup ls`, not one query per device), then cleanup_all.
cmp__cleanup() {
    local m i existing
    for m in "${CMP_MOUNTS[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
    CMP_MOUNTS=()
    existing=" $(dms ls 2>/dev/null | awk '{ printf "%s ", $1 }') "
    for ((i = ${#_DMDEVS[@]} - 1; i >= 0; i--)); do
        [[ "$existing" == *" ${_DMDEVS[$i]} "* ]] && dm_remove "${_DMDEVS[$i]}" >/dev/null 2>&1
    done
    _DMDEVS=()
    cleanup_all
}

# Batches: many device-mapper operations in ONE python3 process (DM ioctls
# on /dev/mapper/control, O_DIRECT writes), for scenarios that would
# otherwise start hundreds of dmsetup processes (each costs 0.3-1 s under
# software emulation).  Per operation the result (errno name), output and
# kernel log lines are printed, and checked against an expectation:
#     cmp_op ok message pool 0 "create_thin 5"
#     cmp_op ok create t5 "0 16384 thin /dev/mapper/pool 5"   (makes the node)
#     cmp_op ok write /dev/mapper/t5 <offset> <length> <source> <source offset>
#     cmp_op ok cmp /dev/mapper/t5 <offset> <length> <source> <source offset>
#     cmp_op - status t5 [table] [noflush]
#     cmp_op fail:EEXIST message pool 0 "create_thin 5"
#     cmp_op ok remove t5
#     cmp_batch "<label>"        # runs them as one recorded step
# Expectations: ok, fail, fail:<ERRNO NAME>, - (record only).  A failed
# expectation is a failed check.  Output lines are left in CMP_OUT
# ("== N op args", "rc=0|ENAME (text)", "out: ...", "kernel: ...").
# Devices a batch creates are not in common.sh's cleanup list: add them
# (_DMDEVS+=(...)) if the run may abort while they exist, cmp_forget them
# after a batch removed them.
CMP_BATCH_PY='import errno, fcntl, mmap, os, select, stat, struct, sys, time
# One process for many device-mapper operations (cmp_batch).  Reads the
# ops from the file named by argv[1], one a line, fields split by "|":
#   <expect>|message|<dev>|<sector>|<text>
#   <expect>|create|<name>|<table line>
#   <expect>|remove|<name>
#   <expect>|suspend|<name>     <expect>|resume|<name>
#   <expect>|status|<name>[|table|noflush]
#   <expect>|write|<path>|<offset>|<length>|<source file>|<source offset>
#   <expect>|cmp|<path>|<offset>|<length>|<source file>|<source offset>
#     (O_DIRECT read of <path>, equal to the source: rc=0, else DIFFERENT)
# <expect>: "ok" (must succeed), "fail" or "fail:<errno name>" (must fail),
# "-" (recorded only).  Prints per op "== N op args", "rc=0" or
# "rc=ENAME", "out: ..." lines, the kernel log lines it produced
# ("kernel: ..."), and "CHECK FAILED: ..." when the expectation is not met.
HDR = struct.Struct("=3IIIIiII4xQ128s129s7s")
assert HDR.size == 312
def iowr(nr): return (3 << 30) | (HDR.size << 16) | (0xfd << 8) | nr
DEV_CREATE, DEV_REMOVE, DEV_SUSPEND, TABLE_LOAD, TABLE_STATUS, TARGET_MSG = (
    iowr(3), iowr(4), iowr(6), iowr(9), iowr(12), iowr(14))
STATUS_TABLE, NOFLUSH, BUFFER_FULL, SUSPEND = 1 << 4, 1 << 11, 1 << 8, 1 << 1
SPEC = struct.Struct("=QQiI16s")
ctl = os.open("/dev/mapper/control", os.O_RDWR)

def dm(cmd, name, flags=0, payload=b"", count=0, size=65536):
    size = max(size, HDR.size + len(payload))
    buf = bytearray(size)
    HDR.pack_into(buf, 0, 4, 0, 0, size, HDR.size, count, 0, flags, 0, 0, name.encode(), b"", b"")
    buf[HDR.size:HDR.size + len(payload)] = payload
    fcntl.ioctl(ctl, cmd, buf, True)
    return buf, HDR.unpack_from(buf, 0)

def table(line):
    out = b""
    lines = [l for l in line.split("\\n") if l.strip()]
    for l in lines:
        f = l.split(None, 3)
        p = (f[3] if len(f) > 3 else "").encode() + b"\0"
        n = SPEC.size + len(p)
        n += (-n) % 8
        out += SPEC.pack(int(f[0]), int(f[1]), 0, n, f[2].encode()) + p + b"\0" * (n - SPEC.size - len(p))
    return out, len(lines)

def node(name): return "/dev/mapper/" + name

def op_create(name, line):
    payload, count = table(line)
    _, h = dm(DEV_CREATE, name)
    try:
        dm(TABLE_LOAD, name, 0, payload, count)
        dm(DEV_SUSPEND, name)
    except OSError:
        dm(DEV_REMOVE, name)
        raise
    dev = h[9]
    try: os.unlink(node(name))
    except FileNotFoundError: pass
    os.mknod(node(name), 0o600 | stat.S_IFBLK, os.makedev(os.major(dev), os.minor(dev)))
    return []

def op_remove(name):
    dm(DEV_REMOVE, name)
    try: os.unlink(node(name))
    except FileNotFoundError: pass
    return []

def op_suspend(name):
    dm(DEV_SUSPEND, name, SUSPEND)
    return []

def op_resume(name):
    dm(DEV_SUSPEND, name)
    return []

def op_status(name, *opts):
    flags = (STATUS_TABLE if "table" in opts else 0) | (NOFLUSH if "noflush" in opts else 0)
    buf, h = dm(TABLE_STATUS, name, flags)
    if h[7] & BUFFER_FULL: return ["(buffer full)"]
    out, start = [], h[4]
    pos = start
    for i in range(h[5]):
        s0, ln, _, nxt, tt = SPEC.unpack_from(buf, pos)
        p = buf[pos + SPEC.size:buf.index(b"\0", pos + SPEC.size)].decode()
        out.append("%d %d %s %s" % (s0, ln, tt.rstrip(b"\0").decode(), p))
        pos = start + nxt
    return out

def op_message(name, sector, text):
    dm(TARGET_MSG, name, 0, struct.pack("=Q", int(sector)) + text.encode() + b"\0")
    return []

def op_write(path, off, ln, src, soff):
    off, ln, soff = int(off), int(ln), int(soff)
    with open(src, "rb") as f:
        f.seek(soff); data = f.read(ln)
    m = mmap.mmap(-1, max(ln, 4096))
    m[:ln] = data
    fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
    try:
        n = os.pwrite(fd, memoryview(m)[:ln], off)
    finally:
        os.close(fd)
    if n != ln: return ["short write %d of %d" % (n, ln)]
    return []

class Different(Exception): pass

def op_cmp(path, off, ln, src, soff):
    off, ln, soff = int(off), int(ln), int(soff)
    with open(src, "rb") as f:
        f.seek(soff); want = f.read(ln)
    m = mmap.mmap(-1, max(ln, 4096))
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        n = os.preadv(fd, [memoryview(m)[:ln]], off)
    finally:
        os.close(fd)
    got = m[:n]
    if got != want:
        i = next((k for k in range(min(len(got), len(want))) if got[k] != want[k]), min(len(got), len(want)))
        raise Different("read %d of %d bytes, first difference at byte %d" % (n, ln, off + i))
    return []

OPS = {"create": op_create, "remove": op_remove, "status": op_status,
       "message": op_message, "write": op_write, "cmp": op_cmp,
       "suspend": op_suspend, "resume": op_resume}

# Kernel lines unrelated to any step (CMP_UNRELATED_RE) are left out.
import re
UNRELATED = re.compile(os.environ.get("CMP_UNRELATED_RE") or "^$")
kr = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
os.lseek(kr, 0, os.SEEK_END)
kw = os.open("/dev/kmsg", os.O_WRONLY)
def klog(n):
    mark = "dmthin-batch-%d" % n
    os.write(kw, (mark + "\n").encode())
    lines, deadline = [], time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            rec = os.read(kr, 8192)
        except BlockingIOError:
            select.select([kr], [], [], 0.5); continue
        except BrokenPipeError:
            continue
        msg = rec.decode(errors="replace").split("\n", 1)[0].split(";", 1)[-1]
        if msg == mark: return lines
        if UNRELATED.search(msg): continue
        lines.append(msg)
    return lines + ["(kernel log mark not seen)"]

klog(0)
failed = 0
for n, line in enumerate(open(sys.argv[1]), 1):
    line = line.rstrip("\n")
    if not line: continue
    f = line.split("|")
    expect, op, args = f[0], f[1], f[2:]
    print("== %d %s %s" % (n, op, " ".join(args)))
    try:
        out, rc = OPS[op](*args), "0"
    except OSError as e:
        out, rc = [], errno.errorcode.get(e.errno, str(e.errno)) + " (" + os.strerror(e.errno) + ")"
    except Different as e:
        out, rc = [str(e)], "DIFFERENT (contents differ)"
    print("rc=" + rc)
    for l in out: print("out: " + l)
    for l in klog(n): print("kernel: " + l)
    bad = (expect == "ok" and rc != "0") or (expect.startswith("fail") and rc == "0") or \
          (expect.startswith("fail:") and not rc.startswith(expect[5:] + " "))
    if bad:
        failed += 1
        print("CHECK FAILED: %s %s: expected %s, got rc=%s" % (op, " ".join(args), expect, rc))
sys.stdout.flush()
sys.exit(1 if failed else 0)
'
cmp_op() {
    local IFS="|"
    printf '%s\n' "$*" >> "$CMP_DIR/.ops"
}
cmp__batch_run() { CMP_UNRELATED_RE="$CMP_UNRELATED_RE" python3 -c "$CMP_BATCH_PY" "$@"; }
cmp_batch() {
    local l n=0
    mv "$CMP_DIR/.ops" "$CMP_DIR/.ops-run"
    cmp_step "$1" cmp__batch_run "$CMP_DIR/.ops-run"
    for l in "${CMP_OUT[@]}"; do
        [[ "$l" == "CHECK FAILED: "* ]] || continue
        n=$((n + 1))
        [ "$n" -le 20 ] && cmp__failed "$1: ${l#CHECK FAILED: }"
    done
    [ "$n" -le 20 ] || cmp__failed "$1: $n expectations failed in all"
    [ "$n" = 0 ] && [ "$CMP_RC" = 0 ] && return 0
    [ "$n" != 0 ] || cmp__failed "$1: batch exited $CMP_RC: ${CMP_ERR[*]:0:3}"
    return 1
}
# cmp_batch_out <n>: the output lines of operation <n> (1-based, in the
# order cmp_op queued them) of the last batch, into B_OUT (no "out: ").
cmp_batch_out() {
    local l cur="" x
    B_OUT=()
    for l in "${CMP_OUT[@]}"; do
        case "$l" in
            "== "*) read -r x cur x <<< "$l" ;;
            "out: "*) [ "$cur" = "$1" ] && B_OUT+=("${l#out: }") ;;
        esac
    done
}
# cmp_forget <name...>: drop dm devices from the cleanup list.
cmp_forget() {
    local -A drop=()
    local i keep=()
    for i in "$@"; do drop[$i]=1; done
    for i in "${_DMDEVS[@]}"; do [ -n "${drop[$i]:-}" ] || keep+=("$i"); done
    _DMDEVS=("${keep[@]}")
}

# ---- driving the runs -------------------------------------------------------

# cmp__one <n> <impl> <function> [args]: one run (in a subshell).
cmp__one() {
    local n="$1"; CMP_IMPL="$2"; shift 2
    CMP_DIR="$CMP_WORK/$n-$CMP_IMPL"
    trap cmp__cleanup EXIT
    exec 9>> "$CMP_DIR/record.raw"
    unload_thin || { cmp__failed "could not unload the dm-thin module left loaded"; exit 1; }
    "load_$CMP_IMPL" || { cmp__failed "load $CMP_IMPL failed"; exit 1; }
    cmp_rec "implementation loaded (name normalised): thin-pool $(target_version thin-pool), thin $(target_version thin)"
    klog_start
    "$@"
    cmp__klog "kernel (after the scenario)"
    exit 0
}

# cmp_run <function> [args]: run the scenario once per implementation.
cmp_run() {
    local i=0 impl dir rc t0 t1
    for impl in "${CMP_IMPLS[@]}"; do
        i=$((i + 1))
        dir="$CMP_WORK/$i-$impl"
        mkdir -p "$dir"; : > "$dir/record.raw"; : > "$dir/devmap.sed"; : > "$dir/failed"
        log "run $i: $impl"
        t0=$SECONDS
        rc=0
        ( cmp__one "$i" "$impl" "$@" ) || rc=$?
        t1=$SECONDS
        if [ "$rc" != 0 ]; then
            echo "FAIL [$impl]: run $i ended with exit status $rc"
            echo "run ended with exit status $rc" >> "$dir/failed"
            echo "== run ended with exit status $rc" >> "$dir/record.raw"
        fi
        unload_thin || { echo "FAIL [$impl]: could not unload the module after run $i"; echo "unload failed" >> "$dir/failed"; }
        # Roles first, then generic device numbers/names.
        sed -E -f "$dir/devmap.sed" -e "s#$CMP_WORK/[0-9]+-[a-z]+#{rundir}#g" \
            -e 's/\b[0-9]+:[0-9]+\b/MAJ:MIN/g; s/\bdm-[0-9]+\b/dm-N/g; s#/dev/loop[0-9]+\b#/dev/loopN#g; s/\bloop[0-9]+\b/loopN/g' \
            "$dir/record.raw" > "$dir/record"
        [ -s "$dir/failed" ] && CMP_BAD=1
        log "run $i ($impl): $((t1 - t0)) s, $(wc -l < "$dir/record") record lines"
    done
}

# cmp_finish: diff every run's record against the oracle's (run 1), print
# the differences, copy the records to $OUTDIR, and exit (0 = identical
# records and no failed check).
cmp_finish() {
    local i n=${#CMP_IMPLS[@]} o d diffs=0
    o="1-${CMP_IMPLS[0]}"
    for ((i = 2; i <= n; i++)); do
        d="$i-${CMP_IMPLS[$((i - 1))]}"
        if ! diff -u --label "$o (oracle)" --label "$d" "$CMP_WORK/$o/record" "$CMP_WORK/$d/record" > "$CMP_WORK/diff-$d"; then
            diffs=$((diffs + 1))
            echo "MISMATCH: records of $o and $d differ ($(grep -c '^[-+][^-+]' "$CMP_WORK/diff-$d") lines):"
            head -n 300 "$CMP_WORK/diff-$d"
            [ "$(wc -l < "$CMP_WORK/diff-$d")" -le 300 ] || echo "... (diff truncated; whole diff in $CMP_WORK/diff-$d)"
        fi
    done
    if [ -n "${OUTDIR:-}" ] && [ -d "$OUTDIR" ] && [ -w "$OUTDIR" ]; then
        rm -rf "$OUTDIR/$CMP_NAME-compare"
        cp -r "$CMP_WORK" "$OUTDIR/$CMP_NAME-compare" 2>/dev/null && rm -f "$OUTDIR/$CMP_NAME-compare"/*/.out "$OUTDIR/$CMP_NAME-compare"/*/.err
        log "records: $OUTDIR/$CMP_NAME-compare/"
    fi
    rm -rf "$CMP_INPUTS"
    [ "$diffs" = 0 ] || CMP_BAD=1
    if [ "$CMP_BAD" != 0 ]; then
        local runs=0
        for ((i = 1; i <= n; i++)); do
            d="$CMP_WORK/$i-${CMP_IMPLS[$((i - 1))]}"
            [ -s "$d/failed" ] || continue
            runs=$((runs + 1))
            sed "s/^/FAIL [run $i ${CMP_IMPLS[$((i - 1))]}]: /" "$d/failed" | head -20
        done
        echo "FAIL: $CMP_NAME: records differ in $diffs of $((n - 1)) comparisons; checks failed in $runs of $n runs"
        exit 1
    fi
    if [ "$n" = 1 ]; then
        echo "$CMP_NAME OK (${CMP_IMPLS[0]} only: checks passed, nothing compared)"
    else
        echo "$CMP_NAME OK (${CMP_IMPLS[*]}: identical records)"
    fi
    exit 0
}

#!/bin/bash
# timeout: 600
# Differential test of table-line parsing: every malformed thin-pool and
# thin table line below is loaded with upstream's dm-thin-pool and then with
# our dm_thin_rs; both must refuse it, and the kernel log lines (plus
# dmsetup's error) must be identical once device numbers (major:minor,
# dm-N) are normalised.  The expected upstream error is checked too, so a
# case that stops testing what its label says is noticed.
#
# Case classes:
#   E  refused before any pool exists/is created: always compared.
#   V  valid: upstream and ours must accept.
#   B  refused during pool creation (blank metadata): compared.
#   L  needs a live pool (@POOL@): compared.
# Placeholders: @P@ = "0 <data sectors> thin-pool", @T@ = "0 409600 thin",
# @META@/@DATA@ pool loop devices, @OTHER@ a plain loop device, @LIN@ a
# linear dm device (@LINMM@ its major:minor), @LINBASE@ its loop device,
# @FILE@ a regular file, @SELF@ the device being loaded (major:minor),
# @POOL@ a live pool, @NL@ a line break (multi-line table); a table
# starting with @RELOAD@ is loaded into the live pool (a reload) instead of
# into a new device.
. "$(dirname "$0")/../lib/common.sh"
set -u

CASES=$(cat <<'CASES_END'
E|pool-argc-0|Invalid argument count|@P@
E|pool-argc-1|Invalid argument count|@P@ @META@
E|pool-argc-2|Invalid argument count|@P@ @META@ @DATA@
E|pool-argc-3|Invalid argument count|@P@ @META@ @DATA@ 128
E|pool-same-dev|Error setting metadata or data device|@P@ @META@ @META@ 128 0
E|pool-same-dev-before-bs|Error setting metadata or data device|@P@ @META@ @META@ 64 x 9
E|pool-same-missing-dev|Error setting metadata or data device|@P@ /dev/nonexistent /dev/nonexistent 128 0
E|pool-features-before-devs|Unrecognised pool feature requested|@P@ /dev/nonexistent @DATA@ 64 x 1 bogus
E|pool-featcount-before-devs|Invalid number of pool feature arguments|@P@ /dev/nonexistent @DATA@ 128 0 5 a b c d e
E|pool-meta-missing|Error opening metadata block device|@P@ /dev/nonexistent @DATA@ 128 0
E|pool-meta-missing-majmin|Error opening metadata block device|@P@ 240:7 @DATA@ 128 0
E|pool-meta-garbage|Error opening metadata block device|@P@ 7:x @DATA@ 128 0
E|pool-meta-regular-file|Error opening metadata block device|@P@ @FILE@ @DATA@ 128 0
E|pool-meta-self|Error opening metadata block device|@P@ @SELF@ @DATA@ 128 0
E|pool-data-missing|Error getting data device|@P@ @META@ /dev/nonexistent 128 0
E|pool-data-self|Error getting data device|@P@ @META@ @SELF@ 128 0
E|pool-devs-before-bs|Error getting data device|@P@ @META@ /dev/nonexistent 0 0
E|pool-bs-0|Invalid block size|@P@ @META@ @DATA@ 0 0
E|pool-bs-64|Invalid block size|@P@ @META@ @DATA@ 64 0
E|pool-bs-127|Invalid block size|@P@ @META@ @DATA@ 127 0
E|pool-bs-129|Invalid block size|@P@ @META@ @DATA@ 129 0
E|pool-bs-192|Invalid block size|@P@ @META@ @DATA@ 192 0
E|pool-bs-2097280|Invalid block size|@P@ @META@ @DATA@ 2097280 0
E|pool-bs-2pow32+128|Invalid block size|@P@ @META@ @DATA@ 4294967424 0
E|pool-bs-2pow64+128|Invalid block size|@P@ @META@ @DATA@ 18446744073709551744 0
E|pool-bs-alpha|Invalid block size|@P@ @META@ @DATA@ abc 0
E|pool-bs-hex|Invalid block size|@P@ @META@ @DATA@ 0x80 0
E|pool-bs-negative|Invalid block size|@P@ @META@ @DATA@ -128 0
E|pool-bs-suffix|Invalid block size|@P@ @META@ @DATA@ 128k 0
E|pool-bs-before-lwm|Invalid block size|@P@ @META@ @DATA@ 64 abc
E|pool-lwm-alpha|Invalid low water mark|@P@ @META@ @DATA@ 128 abc
E|pool-lwm-negative|Invalid low water mark|@P@ @META@ @DATA@ 128 -1
E|pool-lwm-2pow64|Invalid low water mark|@P@ @META@ @DATA@ 128 18446744073709551616
E|pool-lwm-fraction|Invalid low water mark|@P@ @META@ @DATA@ 128 1.5
E|pool-featcount-5|Invalid number of pool feature arguments|@P@ @META@ @DATA@ 128 0 5 skip_block_zeroing ignore_discard no_discard_passdown read_only error_if_no_space
E|pool-featcount-short|Invalid number of pool feature arguments|@P@ @META@ @DATA@ 128 0 2 skip_block_zeroing
E|pool-featcount-alpha|Invalid number of pool feature arguments|@P@ @META@ @DATA@ 128 0 x skip_block_zeroing
E|pool-featcount-plus|Invalid number of pool feature arguments|@P@ @META@ @DATA@ 128 0 +1 skip_block_zeroing
E|pool-featcount-negative|Invalid number of pool feature arguments|@P@ @META@ @DATA@ 128 0 -1 skip_block_zeroing
E|pool-featcount-suffix|Invalid number of pool feature arguments|@P@ @META@ @DATA@ 128 0 1x skip_block_zeroing
E|pool-feature-unknown|Unrecognised pool feature requested|@P@ @META@ @DATA@ 128 0 1 foo
E|pool-feature-suffix|Unrecognised pool feature requested|@P@ @META@ @DATA@ 128 0 1 skip_block_zeroing_
E|pool-feature-dash|Unrecognised pool feature requested|@P@ @META@ @DATA@ 128 0 1 read-only
E|pool-feature-mixedcase-bad|Unrecognised pool feature requested|@P@ @META@ @DATA@ 128 0 1 Skip-Block-Zeroing
E|pool-feature-second-bad|Unrecognised pool feature requested|@P@ @META@ @DATA@ 128 0 2 skip_block_zeroing bogus
E|pool-feature-upper-bad|Unrecognised pool feature requested|@P@ @META@ @DATA@ 128 0 2 ignore_discard IGNORE_DISCARDX
E|pool-not-alone|must appear alone in table|0 1000 linear @LINBASE@ 0@NL@1000 @DSM1000@ thin-pool @META@ @DATA@ 128 0
E|thin-argc-0|Invalid argument count|@T@
E|thin-argc-1|Invalid argument count|@T@ @OTHER@
E|thin-argc-4|Invalid argument count|@T@ @OTHER@ 0 @LIN@ extra
E|thin-origin-same-string|Error setting origin device|@T@ @OTHER@ 0 @OTHER@
E|thin-origin-same-before-id|Error setting origin device|@T@ @OTHER@ 16777216 @OTHER@
E|thin-origin-missing|Error opening origin device|@T@ @OTHER@ 0 /dev/nonexistent
E|thin-origin-before-pool|Error opening origin device|@T@ /dev/nonexistent 0 /dev/nonexistent2
E|thin-origin-self|Error opening origin device|@T@ @OTHER@ 0 @SELF@
E|thin-pool-missing|Error opening pool device|@T@ /dev/nonexistent 0
E|thin-pool-before-id|Error opening pool device|@T@ /dev/nonexistent abc
E|thin-pool-regular-file|Error opening pool device|@T@ @FILE@ 0
E|thin-pool-self|Error opening pool device|@T@ @SELF@ 0
E|thin-id-2pow24|Invalid device id|@T@ @OTHER@ 16777216
E|thin-id-alpha|Invalid device id|@T@ @OTHER@ abc
E|thin-id-negative|Invalid device id|@T@ @OTHER@ -1
E|thin-id-hex|Invalid device id|@T@ @OTHER@ 0x10
E|thin-id-2pow64|Invalid device id|@T@ @OTHER@ 18446744073709551616
E|thin-id-2pow64+1|Invalid device id|@T@ @OTHER@ 18446744073709551617
E|thin-pool-not-dm|Couldn't get pool mapped device|@T@ @OTHER@ 0
E|thin-pool-not-dm-maxid|Couldn't get pool mapped device|@T@ @OTHER@ 16777215
E|thin-pool-not-dm-plusid|Couldn't get pool mapped device|@T@ @OTHER@ +7
E|thin-pool-not-pool|Couldn't find pool object|@T@ @LIN@ 0
E|thin-pool-not-pool-majmin|Couldn't find pool object|@T@ @LINMM@ 0
E|thin-pool-not-pool-origin|Couldn't find pool object|@T@ @LIN@ 0 @OTHER@
V|pool-valid|-|@P@ @META@ @DATA@ 128 0
V|pool-valid-majmin|-|@P@ @METAMM@ @DATAMM@ 1024 0
V|pool-valid-bs-plus|-|@P@ @META@ @DATA@ +128 0
V|pool-valid-bs-leading-zero|-|@P@ @META@ @DATA@ 0128 0
V|pool-valid-lwm-max|-|@P@ @META@ @DATA@ 128 18446744073709551615
V|pool-valid-featcount-0|-|@P@ @META@ @DATA@ 128 0 0
V|pool-valid-trailing-args|-|@P@ @META@ @DATA@ 128 0 0 ignored junk
V|pool-valid-feature-upper|-|@P@ @META@ @DATA@ 128 0 1 SKIP_BLOCK_ZEROING
V|pool-valid-feature-mixed|-|@P@ @META@ @DATA@ 128 0 2 Ignore_Discard No_Discard_Passdown
V|pool-valid-features-4|-|@P@ @META@ @DATA@ 128 0 4 skip_block_zeroing ignore_discard no_discard_passdown error_if_no_space
V|pool-valid-featcount-leading-zero|-|@P@ @META@ @DATA@ 128 0 01 error_if_no_space
V|pool-valid-featcount-u32-wrap|-|@P@ @META@ @DATA@ 128 0 4294967297 error_if_no_space
B|pool-read-only-blank|-|@P@ @META@ @DATA@ 128 0 1 read_only
L|thin-id-not-in-pool|Couldn't open thin internal device|@T@ @POOL@ 99
L|thin-id-max-not-in-pool|Couldn't open thin internal device|@T@ @POOL@ 16777215
L|pool-meta-in-use|metadata device already in use by a pool|@P@ @META@ @OTHER@ 128 0
L|pool-reload-other-data|data device already in use by a pool|@RELOAD@@P@ @META@ @OTHER@ 128 0
L|pool-reload-other-meta|different pool cannot replace a pool|@RELOAD@@P@ @OTHER@ @DATA@ 128 0
L|pool-reload-ignore-discard|Discard support cannot be disabled once enabled|@RELOAD@@P@ @META@ @DATA@ 128 0 1 ignore_discard
CASES_END
)

WORK="$DMTHIN_SCRATCH/table-diff"
rm -rf "$WORK"; mkdir -p "$WORK/upstream" "$WORK/ours"
export DMTHIN_DIFF_WORK="$WORK"

unload_thin || fail "could not unload a dm-thin module left loaded"
make_loop META meta 16 || fail "make_loop meta"
make_loop DATA data 128 || fail "make_loop data"
make_loop OTHER other 16 || fail "make_loop other"
make_loop LINBASE linbase 16 || fail "make_loop linbase"
DS=$(dev_sectors "$DATA")
FILE="$DMTHIN_SCRATCH/regular-file"
truncate -s 16M "$FILE"
assert "create linear device" dm_create diff-lin "0 $(dev_sectors "$LINBASE") linear $LINBASE 0"
LIN=/dev/mapper/diff-lin
LINMM=$(dms info -c --noheadings -o major,minor --separator : diff-lin)
METAMM=$(dev_majmin "$META"); DATAMM=$(dev_majmin "$DATA")
log "META=$META ($METAMM) DATA=$DATA ($DATAMM) OTHER=$OTHER LIN=$LIN ($LINMM) FILE=$FILE"

# expand <table> [self-majmin] [pool]: substitute the placeholders into $EXP.
expand() {
    local s="$1"
    s=${s//@P@/0 $DS thin-pool}; s=${s//@T@/0 409600 thin}
    s=${s//@DSM1000@/$((DS - 1000))}
    s=${s//@METAMM@/$METAMM}; s=${s//@DATAMM@/$DATAMM}
    s=${s//@META@/$META}; s=${s//@DATA@/$DATA}; s=${s//@OTHER@/$OTHER}
    s=${s//@LINMM@/$LINMM}; s=${s//@LINBASE@/$LINBASE}; s=${s//@LIN@/$LIN}
    s=${s//@FILE@/$FILE}; s=${s//@SELF@/${2:-}}; s=${s//@POOL@/${3:-}}
    s=${s//@NL@/$'\n'}
    EXP="$s"
}

# Kernel messages unrelated to the table load (timekeeping under software
# emulation, once-per-boot notices) are left out of the comparison.
UNRELATED_RE='clocksource:|hrtimer: interrupt took|perf: interrupt took|sched: RT throttling|random: |workqueue: .* hogged CPU|block device autoloading is deprecated|callbacks suppressed|used greatest stack depth'

# try_table <dir> <label> <table> [pool]: load the table into a new device
# "dtest"; record "accepted" or "refused", the kernel log lines and dmsetup's
# error in <dir>/<label> (normalised later, all files at once).  A table
# naming @SELF@ is loaded into an existing empty device so it can name
# itself.  Starts no process but dmsetup (this runs ~100 times under
# software emulation, where every exec costs ~0.1 s).
try_table() {
    local dir="$1" label="$2" raw="$3" pool="${4:-}" rc=0 self="" target=dtest op=create l
    echo "# ${dir##*/}: case $label"
    [ -e /dev/mapper/dtest ] && dm_remove dtest
    if [[ "$raw" == @RELOAD@* ]]; then
        raw=${raw#@RELOAD@}; target=${pool##*/}; op=load
    elif [[ "$raw" == *@SELF@* ]]; then
        dms create dtest --notable || { echo "cannot create empty dtest" > "$dir/$label"; return; }
        self=$(dms info -c --noheadings -o major,minor --separator : dtest)
        op=load
    fi
    expand "$raw" "$self" "$pool"
    klog_take
    printf '%s\n' "$EXP" | dms "$op" "$target" > "$dir/$label.err" 2>&1 || rc=$?
    klog_take
    {
        if [ "$rc" = 0 ]; then echo accepted; else echo refused; fi
        for l in "${KLOG_LINES[@]}"; do
            [[ "$l" =~ $UNRELATED_RE ]] || printf 'kernel: %s\n' "$l"
        done
        while IFS= read -r l; do
            [ "$l" = "Command failed." ] || printf 'dmsetup: %s\n' "$l"
        done < "$dir/$label.err"
    } > "$dir/$label"
    if [ "$target" = dtest ]; then
        if [ "$op" = load ] || [ "$rc" = 0 ]; then dm_remove dtest; fi
    elif [ "$rc" = 0 ]; then
        dms clear "$target"    # drop the inactive table a reload left
    fi
}

# first_line <file>: its first line, without starting a process.
first_line() { local l=""; IFS= read -r l < "$1"; printf '%s' "$l"; }

# run_class <impl> <classes> [pool]: run every case of the given classes.
run_class() {
    local impl="$1" classes="$2" pool="${3:-}" class label expect table
    while IFS='|' read -r class label expect table; do
        [[ "$classes" == *"$class"* ]] || continue
        try_table "$WORK/$impl" "$label" "$table" "$pool"
        # A valid line may have formatted the metadata (even if the pool was
        # then refused): wipe it so every V case starts from a blank device.
        [ "$class" != V ] || zero_dev "$META" 1
    done <<< "$CASES"
}

# with_live_pool <impl>: run the L cases against a live pool "diff-pool".
with_live_pool() {
    local impl="$1"
    zero_dev "$META" 1
    dm_create diff-pool "0 $DS thin-pool $META $DATA 128 0" || { echo "FAIL: cannot create live pool with $impl"; return 1; }
    dms message diff-pool 0 "create_thin 0" || { echo "FAIL: create_thin 0 with $impl"; return 1; }
    run_class "$impl" L /dev/mapper/diff-pool
    dm_remove diff-pool || return 1
    thin_check_dev "$META" || { echo "FAIL: thin_check after live-pool cases with $impl"; return 1; }
    zero_dev "$META" 1
}

# normalise_dir <dir>: device numbers and dm-N names, so runs compare.
normalise_dir() {
    find "$1" -type f ! -name '*.err' -exec sed -i -E 's/\b[0-9]+:[0-9]+\b/MAJ:MIN/g; s/\bdm-[0-9]+\b/dm-N/g' {} +
}

klog_start
bad=0
# ---- upstream ----
assert "load upstream" load_upstream
zero_dev "$META" 1
run_class upstream EV
run_class upstream B
with_live_pool upstream || bad=1
normalise_dir "$WORK/upstream"
ncases=0
while IFS='|' read -r class label expect table; do
    ncases=$((ncases + 1))
    f="$WORK/upstream/$label"
    case "$class" in
        V)
            if [ "$(first_line "$f")" != accepted ]; then
                echo "FAIL case $label: upstream refused a line this test calls valid:"; sed 's/^/    /' "$f"; bad=1
            fi ;;
        *)
            if [ "$(first_line "$f")" != refused ]; then
                echo "FAIL case $label: upstream accepted it"; bad=1
            elif [ "$expect" != - ] && ! grep -qF -- "$expect" "$f"; then
                echo "FAIL case $label: upstream's error does not contain \"$expect\":"; sed 's/^/    /' "$f"; bad=1
            fi ;;
    esac
done <<< "$CASES"
log "upstream: $ncases cases run"
grep -h '^kernel: ' "$WORK"/upstream/* | sort | uniq -c | sort -rn | sed 's/^/#   /'
unload_thin || fail "rmmod upstream"

# ---- ours ----
if [ ! -f "$DMTHIN_KO" ]; then
    echo "FAIL: module not built ($DMTHIN_KO missing); upstream side checked only"
    exit 1
fi
load_ours || fail "insmod $DMTHIN_KO failed"
zero_dev "$META" 1
run_class ours EV
[ "$(first_line "$WORK/ours/pool-valid")" = accepted ] || { echo "FAIL: ours refused the valid pool line:"; sed 's/^/    /' "$WORK/ours/pool-valid"; bad=1; }
run_class ours B
with_live_pool ours || bad=1
unload_thin || { echo "FAIL: rmmod dm_thin_rs failed"; bad=1; }
normalise_dir "$WORK/ours"

compared=0; mismatches=0; first=""
while IFS='|' read -r class label expect table; do
    u="$WORK/upstream/$label"; o="$WORK/ours/$label"
    case "$class" in
        V)
            compared=$((compared + 1))
            if [ "$(first_line "$o")" = accepted ]; then continue; fi
            mismatches=$((mismatches + 1))
            echo "MISMATCH $label: valid line refused by ours"
            expand "$table" SELF POOL; echo "    table:    ${EXP//$'\n'/ ; }"
            sed 's/^/    ours:     /' "$o"
            [ -n "$first" ] || first="$label" ;;
        *)
            compared=$((compared + 1))
            if [ "$(<"$u")" != "$(<"$o")" ]; then
                mismatches=$((mismatches + 1))
                ul=$(diff "$u" "$o" | sed -n 's/^< //p' | head -1)
                ol=$(diff "$u" "$o" | sed -n 's/^> //p' | head -1)
                ul=${ul#kernel: device-mapper: table: MAJ:MIN: }; ol=${ol#kernel: device-mapper: table: MAJ:MIN: }
                echo "MISMATCH $label: upstream [${ul:-nothing}] ours [${ol:-nothing}]"
                expand "$table" SELF POOL; echo "    table:    ${EXP//$'\n'/ ; }"
                sed 's/^/    upstream: /' "$u"
                sed 's/^/    ours:     /' "$o"
                [ -n "$first" ] || first="$label"
            fi ;;
    esac
done <<< "$CASES"
log "compared $compared of $ncases cases: $mismatches mismatches"
if [ "$mismatches" != 0 ]; then
    echo "FAIL: $mismatches of $compared table lines differ between upstream and ours; first: $first"
    bad=1
fi
[ "$bad" = 0 ] || exit 1
echo "table-line differential OK ($compared cases compared)"

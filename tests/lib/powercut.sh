# Power-cut series for tests/guest/21-power-cut*.sh: the same seeded
# series of cuts (tests/lib/powercut.py does one series in one process) run
# once per implementation through tests/lib/compare.sh, and the verdicts
# compared.  Source after common.sh and compare.sh:
#     PC_ARGS=("$@")     # the test script's arguments
#     pc_main <default cuts> <first cut number> <seed> [powercut.py options...]
# The script's own arguments: `cuts=N` (or `--cuts N`) sets the number of
# cuts per implementation; the other words are implementations (cmp_init).
# Without cuts=N: DMTHIN_CUTS in the guest's environment, then
# $OUTDIR/dmthin-cuts (written on the host by the test's host-prepare line
# from the host's DMTHIN_CUTS), then the default.
#
# What goes into the compared record: the implementation-independent
# verdict lines only ("cut N (seed S, mode): ok", the final read-back);
# the counts and timings (they depend on where each cut fell) go to the
# test's output and to $CMP_DIR/details, and the kernel lines of the
# series (I/O errors after the cut, pool mode switches: their number
# depends on timing too) to $CMP_DIR/kernel.log.

pc_main() {
    local dflt="$1" first="$2" seed="$3"; shift 3
    local impls=() cuts="" from=""
    PC_OPTS=("$@")
    set -- "${PC_ARGS[@]}"
    while [ $# -gt 0 ]; do
        case "$1" in
            cuts=*) cuts="${1#cuts=}"; from="arguments" ;;
            --cuts) cuts="${2:-}"; from="arguments"; shift ;;
            *) impls+=("$1") ;;
        esac
        shift
    done
    if [ -z "$cuts" ] && [ -n "${DMTHIN_CUTS:-}" ]; then cuts="$DMTHIN_CUTS"; from="DMTHIN_CUTS"; fi
    if [ -z "$cuts" ] && [ -n "${OUTDIR:-}" ] && [ -s "$OUTDIR/dmthin-cuts" ]; then
        read -r cuts < "$OUTDIR/dmthin-cuts" || true
        [ -z "$cuts" ] || from="host DMTHIN_CUTS via \$OUTDIR/dmthin-cuts"
    fi
    [ -n "$cuts" ] || { cuts="$dflt"; from="default"; }
    [[ "$cuts" =~ ^[1-9][0-9]*$ ]] || fail "cuts must be a positive number (got '$cuts' from $from)"
    PC_CUTS="$cuts"; PC_FIRST="$first"; PC_SEED="$seed"
    cmp_init "${impls[@]}"
    log "cuts per implementation: $PC_CUTS (from $from), seed $PC_SEED, options: ${PC_OPTS[*]}"
    modprobe dm-flakey || fail "modprobe dm-flakey"
    cmp_run pc_scenario
    cmp_finish
}

pc_scenario() {
    local rc=0 l n=0
    cmp_loop META meta 8
    cmp_loop DATA data 24
    cmp_rec "power-cut series: $PC_CUTS cuts, seed $PC_SEED, ${PC_OPTS[*]}"
    local t0=$EPOCHREALTIME
    python3 "$TESTS_DIR/lib/powercut.py" --meta "$META" --data "$DATA" --cuts "$PC_CUTS" \
        --first "$PC_FIRST" --seed "$PC_SEED" --details "$CMP_DIR/details" "${PC_OPTS[@]}" \
        > "$CMP_DIR/verdicts" 2> "$CMP_DIR/stderr" || rc=$?
    log "[$CMP_IMPL] powercut.py took $(( ${EPOCHREALTIME/./} / 1000000 - ${t0/./} / 1000000 )) s"
    klog_take || true
    printf '%s\n' "${KLOG_LINES[@]}" > "$CMP_DIR/kernel.log"
    log "[$CMP_IMPL] details (not compared: they depend on where each cut fell):"
    sed 's/^/#   /' "$CMP_DIR/details" 2>/dev/null
    log "[$CMP_IMPL] $(wc -l < "$CMP_DIR/kernel.log") kernel log lines during the series (in $CMP_DIR/kernel.log)"
    while IFS= read -r l; do
        cmp_rec "$l"
        n=$((n + 1))
        case "$l" in
            *": ok"|"final pool on the loop devices: "*) ;;
            *) cmp__failed "$l" ;;
        esac
    done < "$CMP_DIR/verdicts"
    if [ -s "$CMP_DIR/stderr" ]; then
        cmp__failed "powercut.py wrote to stderr: $(head -c 600 "$CMP_DIR/stderr")"
    fi
    cmp_check "powercut.py exit status 0 (got $rc)" test "$rc" = 0
    cmp_check "every cut judged: $((PC_CUTS + 1)) verdict lines (got $n)" test "$n" = $((PC_CUTS + 1))
}

#!/bin/bash
# timeout: 360
# host-prepare: printf '%s\n' "${DMTHIN_IMPLS:-}" > "$OUTDIR/dmthin-impls"
# 100 thin devices in one pool, compared between implementations
# (tests/lib/compare.sh; DMTHIN_IMPLS selects them): created by message
# (ids spread over the 24-bit range), all activated at once, one data
# block written to each (at varied virtual blocks), every thin's status
# checked (128 mapped sectors, highest sector of the written block), pool
# status (100 used data blocks); a delete of an active thin refused
# (EBUSY); all removed; pool torn down (thin_check, thin_dump: 100 devices
# of one mapping each) and rebuilt; all deleted (pool back to 0 used data
# blocks); teardown, thin_check, thin_dump.  The per-thin operations run
# through cmp_batch (DM ioctls from one python3 process, errno and kernel
# log per operation), not 500 dmsetup processes.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/compare.sh"
set -u
cmp_init "$@"

N=100
PAT="$CMP_INPUTS/pattern"
cmp_random 13 "$PAT" $((N * 65536)) || fail "pattern"
id_of() { ID=$(($1 * 167000 + $1)); }    # 0 .. 16533099
vb_of() { VB=$(($1 * 37 % 128)); }       # virtual block written in thin i

scenario() {
    local DS i l name x mapped highest names=()
    local -A seen=()
    cmp_loop META meta 8
    cmp_loop DATA data 32
    DS=$(dev_sectors "$DATA")
    cmp_create pool "0 $DS thin-pool $META $DATA 128 0"
    cmp_pool_status pool
    # One python process per phase (tests/lib/compare.sh: cmp_batch): 100
    # dmsetup calls per phase would take minutes under emulation.
    for ((i = 0; i < N; i++)); do
        id_of "$i"
        cmp_op ok message pool 0 "create_thin $ID"
        cmp_op ok create "t$i" "0 16384 thin /dev/mapper/pool $ID"
        names+=("t$i")
    done
    id_of 7
    cmp_op fail:EEXIST message pool 0 "create_thin $ID"
    _DMDEVS+=("${names[@]}")
    cmp_batch "create_thin and activate $N thins"
    for ((i = 0; i < N; i++)); do
        vb_of "$i"
        cmp_op ok write "/dev/mapper/t$i" $((VB * 65536)) 65536 "$PAT" $((i * 65536))
    done
    cmp_batch "write one block to each thin"
    for ((i = 0; i < N; i++)); do cmp_op ok status "t$i"; done
    cmp_batch "status of each thin"
    for l in "${CMP_OUT[@]}"; do
        case "$l" in
            "== "*) read -r x x x name <<< "$l" ;;
            "out: "*)
                read -r x x x x mapped highest <<< "$l"
                i=${name#t}
                vb_of "$i"
                [ "$mapped $highest" = "128 $((VB * 128 + 127))" ] \
                    || cmp__failed "$name: status '$mapped $highest', expected '128 $((VB * 128 + 127))'"
                seen[$i]=1 ;;
        esac
    done
    cmp_check "statuses of $N thins checked (got ${#seen[@]})" test "${#seen[@]}" = "$N"
    cmp_pool_status pool
    cmp_check "$N used data blocks (got $P_DUSED)" test "$P_DUSED" = "$N"
    cmp_check "first thin reads back" cmp -n 65536 "$PAT" /dev/mapper/t0 0 0
    vb_of $((N - 1))
    cmp_check "last thin reads back" cmp -n 65536 "$PAT" "/dev/mapper/t$((N - 1))" $(((N - 1) * 65536)) $((VB * 65536))
    cmp_op fail:EBUSY message pool 0 "delete 0"
    for ((i = 0; i < N; i++)); do cmp_op ok remove "t$i"; done
    cmp_batch "remove every thin"
    cmp_forget "${names[@]}"
    cmp_pool_status pool
    cmp_teardown pool "$META"
    cmp_check "dump: $N devices, $N mappings, $N data blocks (got $D_DEVICES $D_MAPPINGS $D_DISTINCT)" \
        test "$D_DEVICES $D_MAPPINGS $D_DISTINCT" = "$N $N $N"

    cmp_create pool "0 $DS thin-pool $META $DATA 128 0"
    cmp_pool_status pool
    for ((i = 0; i < N; i++)); do
        id_of "$i"
        cmp_op ok message pool 0 "delete $ID"
    done
    cmp_op fail:ENODATA message pool 0 "delete 0"
    cmp_batch "delete every thin"
    cmp_pool_status pool
    cmp_check "0 used data blocks after deleting all (got $P_DUSED)" test "$P_DUSED" = 0
    cmp_teardown pool "$META"
    cmp_check "dump: no devices left (got $D_DEVICES)" test "$D_DEVICES" = 0
}

cmp_run scenario
cmp_finish

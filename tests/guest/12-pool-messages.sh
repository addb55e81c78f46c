#!/bin/bash
# timeout: 400
# host-prepare: printf '%s\n' "${DMTHIN_IMPLS:-}" > "$OUTDIR/dmthin-impls"
# Every pool message path, compared between implementations
# (tests/lib/compare.sh; DMTHIN_IMPLS selects them): for each message
# dmsetup's exit status and stderr, the kernel log lines, and the pool
# status after it; thin_dump after each teardown.  Expected outcomes
# (upstream's errnos) are asserted too:
# create_thin (ok, existing id EEXIST, id 2^24 / non-decimal / negative /
# hex / empty EINVAL, wrong argument counts EINVAL), create_snap (ok,
# missing origin ENODATA, existing id EEXIST, wrong counts), delete (ok,
# unknown ENODATA, active thin EBUSY), set_transaction_id (ok, wrong old id
# EINVAL, bad numbers EINVAL), reserve_metadata_snap (ok, twice EBUSY, held
# root in the status), release_metadata_snap (ok, none held EINVAL), an
# unknown message, upper/mixed-case names, a message to a thin device, a
# message at a non-zero sector and one past the end, and a read_only pool
# refusing every message (EOPNOTSUPP).
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/compare.sh"
set -u
cmp_init "$@"

# msg <expect> <message words...>: send a message to "pool" (as one
# argument, so dmsetup does not take "-1" for an option), then the pool's
# status.  <expect> is "ok" or a text the failure must show (dmsetup's
# strerror text).
msg() {
    local want="$1"; shift
    if [ "$want" = ok ]; then
        cmp_ok "message '$*'" dms message pool 0 "$*"
    else
        cmp_fails "$want" "message '$*'" dms message pool 0 "$*"
    fi
    cmp_pool_status pool
}

EEXIST="File exists"; EINVAL="Invalid argument"; ENODATA="No data available"
EBUSY="Device or resource busy"; EOPNOTSUPP="Operation not supported"

scenario() {
    local DS held
    cmp_loop META meta 8
    cmp_loop DATA data 32
    DS=$(dev_sectors "$DATA")
    cmp_create pool "0 $DS thin-pool $META $DATA 128 0"
    cmp_pool_status pool

    # create_thin
    msg ok create_thin 0
    msg "$EEXIST" create_thin 0
    msg ok create_thin 16777215
    msg "$EINVAL" create_thin 16777216
    msg "$EINVAL" create_thin 18446744073709551616
    msg "$EINVAL" create_thin abc
    msg "$EINVAL" create_thin -1
    msg "$EINVAL" create_thin 0x10
    msg "$EINVAL" create_thin 1k
    msg "$EINVAL" create_thin
    msg "$EINVAL" create_thin 1 2
    msg ok create_thin +3
    msg ok create_thin 04
    # create_snap
    msg ok create_snap 1 0
    msg "$ENODATA" create_snap 2 99
    msg "$EEXIST" create_snap 1 0
    msg "$EEXIST" create_snap 0 1
    msg "$EINVAL" create_snap 2
    msg "$EINVAL" create_snap 2 0 0
    msg "$EINVAL" create_snap 16777216 0
    msg "$EINVAL" create_snap 2 x
    msg ok create_snap 2 1
    # delete
    msg ok delete 2
    msg "$ENODATA" delete 2
    msg "$ENODATA" delete 77
    msg "$EINVAL" delete
    msg "$EINVAL" delete 1 0
    msg "$EINVAL" delete 16777216
    cmp_create thin "0 8192 thin /dev/mapper/pool 0"
    cmp_ok "write to thin 0" dd if=/dev/zero of=/dev/mapper/thin bs=64k count=3 oflag=direct status=none
    msg "$EBUSY" delete 0
    cmp_fails "$EINVAL" "message to a thin device" dms message thin 0 create_thin 50
    cmp_thin_status thin
    cmp_remove thin
    msg ok delete 3
    # set_transaction_id
    msg ok set_transaction_id 0 1
    msg "$EINVAL" set_transaction_id 0 2
    msg "$EINVAL" set_transaction_id 5 6
    msg "$EINVAL" set_transaction_id x 2
    msg "$EINVAL" set_transaction_id 1 y
    msg "$EINVAL" set_transaction_id 1
    msg "$EINVAL" set_transaction_id 1 2 3
    msg ok set_transaction_id 1 18446744073709551615
    msg ok set_transaction_id 18446744073709551615 7
    # metadata snapshots
    msg "$EINVAL" release_metadata_snap
    msg ok reserve_metadata_snap
    held="$P_HELD"
    cmp_check "status shows the held root (got '$held')" test "$held" != - -a -n "$held"
    msg "$EBUSY" reserve_metadata_snap
    msg ok create_thin 5
    cmp_check "held root unchanged by later changes ($held -> $P_HELD)" test "$P_HELD" = "$held"
    msg "$EINVAL" reserve_metadata_snap extra
    msg ok release_metadata_snap
    cmp_check "no held root after release (got '$P_HELD')" test "$P_HELD" = -
    msg "$EINVAL" release_metadata_snap
    # names: unknown, case
    msg "$EINVAL" frobnicate
    msg "$EINVAL" create_thinx 6
    msg ok CREATE_THIN 6
    msg ok Create_Snap 7 6
    msg ok DELETE 7
    msg ok Set_Transaction_Id 7 8
    msg ok RESERVE_METADATA_SNAP
    msg ok release_METADATA_snap
    cmp_step "message with sector 1" dms message pool 1 create_thin 8
    cmp_fails "$EINVAL" "message with a sector past the end" dms message pool "$DS" create_thin 9
    cmp_pool_status pool
    cmp_teardown pool "$META"

    # read_only: every message refused.
    cmp_create pool "0 $DS thin-pool $META $DATA 128 0 1 read_only"
    cmp_pool_status pool
    cmp_check "read_only pool reports ro (got '$P_MODE')" test "$P_MODE" = ro
    msg "$EOPNOTSUPP" create_thin 9
    msg "$EOPNOTSUPP" create_snap 9 0
    msg "$EOPNOTSUPP" delete 0
    msg "$EOPNOTSUPP" set_transaction_id 8 9
    msg "$EOPNOTSUPP" reserve_metadata_snap
    msg "$EOPNOTSUPP" release_metadata_snap
    msg "$EOPNOTSUPP" frobnicate
    cmp_step "pool table (read_only)" dms table pool
    cmp_teardown pool "$META"
}

cmp_run scenario
cmp_finish

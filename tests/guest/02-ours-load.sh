#!/bin/bash
# timeout: 120
# Our module: dm_thin_rs.ko loads (after its dependencies dm-bufio and
# libcrc32c), registers thin-pool and thin v1.23.0, and unregisters them on
# rmmod; loading and unloading twice leaves no target behind.  The runner
# fails the test on any kernel splat.
. "$(dirname "$0")/../lib/common.sh"
set -u

[ -f "$DMTHIN_KO" ] || fail "module not built ($DMTHIN_KO missing)"
unload_thin || fail "could not unload a dm-thin module left loaded"
assert "no thin-pool target before loading" test -z "$(target_version thin-pool)"

for round in 1 2; do
    load_ours || fail "insmod $DMTHIN_KO failed (round $round)"
    log "round $round: lsmod: $(grep '^dm_thin_rs ' /proc/modules)"
    log "round $round: targets: $(dms targets | tr '\n' ' ')"
    assert "thin-pool v1.23.0 registered by ours" test "$(target_version thin-pool)" = v1.23.0
    assert "thin v1.23.0 registered by ours" test "$(target_version thin)" = v1.23.0
    assert "upstream dm_thin_pool not loaded" test "$(thin_loaded)" = ours
    rmmod dm_thin_rs || fail "rmmod dm_thin_rs failed (round $round)"
    assert "thin-pool gone after rmmod" test -z "$(target_version thin-pool)"
    assert "thin gone after rmmod" test -z "$(target_version thin)"
done
echo "ours load/unload OK"

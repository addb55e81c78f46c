#!/bin/bash
# timeout: 300
# A pool written by OUR persistent-data code opens in UPSTREAM's C
# dm-thin-pool: the metadata image made on the host by
# rust/host-tests/tools/ours_image.rs (several thins, snapshots of
# snapshots, a range removal, a deleted thin, a held metadata snapshot,
# transaction id 41) is loaded under upstream's thin-pool; its status
# must report exactly the numbers our code computed, every thin's status
# the mapped and highest sectors, and new writes and a snapshot made by
# upstream on top of our metadata must leave it passing thin_check.
# The image comes from scripts/guest-tests.sh (into $OUTDIR/ours-image).
# host-prepare: mkdir -p "$OUTDIR/ours-image" && cargo run -q -p host-tests --bin ours_image -- "$OUTDIR/ours-image"
. "$(dirname "$0")/../lib/common.sh"
set -u
src="${OUTDIR:-}/ours-image"
[ -n "$src" ] && [ -f "$src/ours.meta" ] || fail "image not prepared in $src: run through scripts/guest-tests.sh"
exp() { awk -v k="$1" '$1 == k { print $2 }' "$src/ours.expect"; }

unload_thin || fail "could not unload a dm-thin module"
assert "load upstream" load_upstream
make_loop META meta 16 || fail "make_loop meta"
assert "copy our image" dd if="$src/ours.meta" of="$META" bs=1M conv=notrunc status=none
assert "metadata device holds exactly our image" test "$(( $(stat -c %s "$src/ours.meta") / 4096 ))" = "$(exp meta_total)"
nr_data=$(exp nr_data); bs=$(exp block_size)
make_loop DATA data $(( nr_data * bs / 2048 + 1 )) || fail "make_loop data"
sectors=$(( nr_data * bs ))
# The metadata device is bigger than our image's space map: use a linear
# device of exactly the image's size so upstream does not grow it.
assert "meta linear" dm_create ours-meta "0 $(( $(exp meta_total) * 8 )) linear $META 0"
assert "create pool on our metadata" dm_create ours-pool "0 $sectors thin-pool /dev/mapper/ours-meta $DATA $bs 0"
st=$(dms status ours-pool)
log "pool status: $st"
set -- $st
assert "transaction id $(exp trans) (got $4)" test "$4" = "$(exp trans)"
assert "metadata used/total $(exp meta_used)/$(exp meta_total) (got $5)" test "$5" = "$(exp meta_used)/$(exp meta_total)"
assert "data used/total $(exp data_used)/$nr_data (got $6)" test "$6" = "$(exp data_used)/$nr_data"
assert "held root $(exp held) (got $7)" test "$7" = "$(exp held)"
while read -r key id mapped highest; do
    [ "$key" = dev ] || continue
    assert "activate thin $id" dm_create "ours-thin$id" "0 4194304 thin /dev/mapper/ours-pool $id"
    got=$(dms status "ours-thin$id" | awk '{ print $4, $5 }')
    assert "thin $id status '$mapped $highest' (got '$got')" test "$got" = "$mapped $highest"
done < "$src/ours.expect"
# Upstream writes on top of our metadata (provisioning and breaking
# sharing), and snapshots a thin.
assert "write thin 1" dd if=/dev/urandom of=/dev/mapper/ours-thin1 bs=64k count=64 seek=100 oflag=direct status=none
assert "write thin 3" dd if=/dev/urandom of=/dev/mapper/ours-thin3 bs=64k count=64 seek=30000 oflag=direct status=none
assert "create_snap 9 2" dms message ours-pool 0 "create_snap 9 2"
assert "release_metadata_snap" dms message ours-pool 0 release_metadata_snap
for t in 1 2 3 4; do assert "remove thin $t" dm_remove "ours-thin$t"; done
assert "pool teardown + thin_check" pool_teardown ours-pool /dev/mapper/ours-meta
thin_dump /dev/mapper/ours-meta > "$DMTHIN_SCRATCH/after.xml" || fail "thin_dump"
assert "snapshot 9 present after upstream's changes" grep -q 'dev_id="9"' "$DMTHIN_SCRATCH/after.xml"
cleanup_all
assert "unload upstream" unload_thin
echo "our image opens in upstream OK"

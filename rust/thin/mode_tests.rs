//! Host tests of the pool mode state machine against upstream's
//! `set_pool_mode` rules.

use super::*;

const ALL: [PoolMode; 5] = [
    PoolMode::Write,
    PoolMode::OutOfDataSpace,
    PoolMode::OutOfMetadataSpace,
    PoolMode::ReadOnly,
    PoolMode::Fail,
];

#[test]
fn without_needs_check_every_transition_is_taken_except_out_of_fail() {
    for old in ALL {
        for new in ALL {
            let want = if old == PoolMode::Fail {
                PoolMode::Fail
            } else {
                new
            };
            assert_eq!(next_mode(old, new, false), want, "{old:?} -> {new:?}");
        }
    }
}

#[test]
fn needs_check_blocks_write_mode() {
    assert_eq!(
        next_mode(PoolMode::Write, PoolMode::Write, true),
        PoolMode::ReadOnly
    );
    assert_eq!(
        next_mode(PoolMode::ReadOnly, PoolMode::Write, true),
        PoolMode::ReadOnly
    );
    assert_eq!(
        next_mode(PoolMode::OutOfDataSpace, PoolMode::Write, true),
        PoolMode::OutOfDataSpace
    );
    assert_eq!(
        next_mode(PoolMode::OutOfMetadataSpace, PoolMode::Write, true),
        PoolMode::OutOfMetadataSpace
    );
    assert_eq!(
        next_mode(PoolMode::Fail, PoolMode::Write, true),
        PoolMode::Fail
    );
    // Other targets are not affected by needs_check.
    assert_eq!(
        next_mode(PoolMode::Write, PoolMode::ReadOnly, true),
        PoolMode::ReadOnly
    );
    assert_eq!(
        next_mode(PoolMode::Write, PoolMode::OutOfDataSpace, true),
        PoolMode::OutOfDataSpace
    );
}

#[test]
fn words_and_read_only_modes() {
    let words: [&str; 5] = ALL.map(PoolMode::status_word);
    assert_eq!(words, ["rw", "out_of_data_space", "ro", "ro", "ro"]);
    let desc: [&str; 5] = ALL.map(PoolMode::description);
    assert_eq!(
        desc,
        [
            "write",
            "out-of-data-space",
            "read-only",
            "read-only",
            "fail"
        ]
    );
    let ro: [bool; 5] = ALL.map(PoolMode::is_read_only);
    assert_eq!(ro, [false, false, true, true, true]);
    let refuse: [bool; 5] = ALL.map(PoolMode::refuses_messages);
    assert_eq!(refuse, [false, false, true, true, true]);
    for m in ALL {
        assert_eq!(PoolMode::from_u8(m as u8), m);
    }
    assert_eq!(PoolMode::from_u8(200), PoolMode::Fail);
}

#[test]
fn unserviceable_bios() {
    assert_eq!(
        unserviceable(PoolMode::OutOfDataSpace, false),
        Unserviceable::Queue
    );
    assert_eq!(
        unserviceable(PoolMode::OutOfDataSpace, true),
        Unserviceable::NoSpace
    );
    for m in [
        PoolMode::Write,
        PoolMode::OutOfMetadataSpace,
        PoolMode::ReadOnly,
        PoolMode::Fail,
    ] {
        for e in [false, true] {
            assert_eq!(unserviceable(m, e), Unserviceable::IoError, "{m:?}");
        }
    }
}

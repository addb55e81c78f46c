//! Unit tests of `thin-pool` message parsing against upstream's
//! `pool_message` rules (order of checks, warnings, errno).

use super::*;
use std::format;
use std::string::String;

/// Parses words that must be accepted.
fn ok(argv: &[&[u8]]) -> Message {
    match parse(argv) {
        Ok(m) => m,
        Err(e) => panic!("{argv:?} refused: {}", e.warning),
    }
}

/// Parses words that must be refused; checks the errno and returns the
/// warning text.
fn refused(argv: &[&[u8]]) -> String {
    match parse(argv) {
        Ok(m) => panic!("{argv:?} accepted as {m:?}"),
        Err(e) => {
            assert_eq!(e.errno, 22, "{argv:?}");
            format!("{}", e.warning)
        }
    }
}

/// The failure warning text for words that parse.
fn failure(argv: &[&[u8]]) -> String {
    let m = ok(argv);
    format!("{}", failure_warning(argv, &m))
}

const BAD_ID: &str = "Message received with invalid device id: ";

#[test]
fn create_thin() {
    assert_eq!(ok(&[b"create_thin", b"5"]), Message::CreateThin { id: 5 });
    assert_eq!(ok(&[b"create_thin", b"0"]), Message::CreateThin { id: 0 });
}

#[test]
fn create_snap() {
    assert_eq!(
        ok(&[b"create_snap", b"6", b"5"]),
        Message::CreateSnap { id: 6, origin: 5 }
    );
    // Same id twice parses; the metadata refuses it later.
    assert_eq!(
        ok(&[b"create_snap", b"1", b"1"]),
        Message::CreateSnap { id: 1, origin: 1 }
    );
}

#[test]
fn delete() {
    assert_eq!(ok(&[b"delete", b"17"]), Message::Delete { id: 17 });
}

#[test]
fn set_transaction_id() {
    assert_eq!(
        ok(&[b"set_transaction_id", b"0", b"1"]),
        Message::SetTransactionId { current: 0, new: 1 }
    );
    // Any u64, not limited to device ids, and no order between the two.
    assert_eq!(
        ok(&[b"set_transaction_id", b"16777216", b"3"]),
        Message::SetTransactionId {
            current: 16_777_216,
            new: 3
        }
    );
    assert_eq!(
        ok(&[
            b"set_transaction_id",
            b"18446744073709551615",
            b"+18446744073709551615\n"
        ]),
        Message::SetTransactionId {
            current: u64::MAX,
            new: u64::MAX
        }
    );
}

#[test]
fn metadata_snap() {
    assert_eq!(
        ok(&[b"reserve_metadata_snap"]),
        Message::ReserveMetadataSnap
    );
    assert_eq!(
        ok(&[b"release_metadata_snap"]),
        Message::ReleaseMetadataSnap
    );
}

#[test]
fn names_are_case_insensitive() {
    assert_eq!(ok(&[b"CREATE_THIN", b"1"]), Message::CreateThin { id: 1 });
    assert_eq!(
        ok(&[b"Create_Snap", b"2", b"1"]),
        Message::CreateSnap { id: 2, origin: 1 }
    );
    assert_eq!(ok(&[b"DeLeTe", b"3"]), Message::Delete { id: 3 });
    assert_eq!(
        ok(&[b"SET_TRANSACTION_ID", b"4", b"5"]),
        Message::SetTransactionId { current: 4, new: 5 }
    );
    assert_eq!(
        ok(&[b"Reserve_Metadata_Snap"]),
        Message::ReserveMetadataSnap
    );
    assert_eq!(
        ok(&[b"RELEASE_metadata_SNAP"]),
        Message::ReleaseMetadataSnap
    );
}

#[test]
fn names_match_the_whole_word() {
    for name in [
        &b"create_thi"[..],
        b"create_thinx",
        b"create_thin\n",
        b" create_thin",
        b"create-thin",
        b"createthin",
        b"delete_thin",
        b"release_metadata_snapshot",
        b"",
    ] {
        let text = refused(&[name, b"1"]);
        let want = format!(
            "Unrecognised thin pool target message received: {}",
            std::str::from_utf8(name).unwrap()
        );
        assert_eq!(text, want);
    }
}

#[test]
fn unknown_message() {
    assert_eq!(
        refused(&[b"frobnicate"]),
        "Unrecognised thin pool target message received: frobnicate"
    );
    // The name is checked before any argument count.
    assert_eq!(
        refused(&[b"trim", b"1", b"2", b"3"]),
        "Unrecognised thin pool target message received: trim"
    );
    // Upstream's strcasecmp folds Latin-1 letters too, but none folds to
    // ASCII, so only ASCII matters; non-UTF-8 bytes print as '?'.
    assert_eq!(
        refused(&[b"CREATE_TH\xc9N", b"1"]),
        "Unrecognised thin pool target message received: CREATE_TH?N"
    );
}

#[test]
fn empty_message() {
    let e = parse(&[]).unwrap_err();
    assert_eq!(e.errno, 22);
    assert_eq!(e.warning, Warning::EmptyMessage);
    assert_eq!(format!("{}", e.warning), "Empty message received.");
}

#[test]
fn argument_counts() {
    let cases: &[(&[&[u8]], usize, usize)] = &[
        (&[b"create_thin"], 1, 2),
        (&[b"create_thin", b"1", b"2"], 3, 2),
        (&[b"create_snap"], 1, 3),
        (&[b"create_snap", b"1"], 2, 3),
        (&[b"create_snap", b"1", b"2", b"3"], 4, 3),
        (&[b"delete"], 1, 2),
        (&[b"delete", b"1", b"2"], 3, 2),
        (&[b"set_transaction_id"], 1, 3),
        (&[b"set_transaction_id", b"1"], 2, 3),
        (&[b"set_transaction_id", b"1", b"2", b"3"], 4, 3),
        (&[b"reserve_metadata_snap", b"1"], 2, 1),
        (&[b"release_metadata_snap", b"1", b"2"], 3, 1),
    ];
    for &(argv, got, want) in cases {
        let e = parse(argv).unwrap_err();
        assert_eq!(e.errno, 22);
        assert_eq!(e.warning, Warning::ArgCount { got, want }, "{argv:?}");
        assert_eq!(
            format!("{}", e.warning),
            format!("Message received with {got} arguments instead of {want}.")
        );
    }
    assert_eq!(
        refused(&[b"create_thin", b"1", b"2"]),
        "Message received with 3 arguments instead of 2."
    );
    assert_eq!(
        refused(&[b"reserve_metadata_snap", b"now"]),
        "Message received with 2 arguments instead of 1."
    );
}

#[test]
fn argument_count_before_ids() {
    assert_eq!(
        refused(&[b"create_thin", b"bad", b"worse"]),
        "Message received with 3 arguments instead of 2."
    );
    assert_eq!(
        refused(&[b"create_snap", b"bad"]),
        "Message received with 2 arguments instead of 3."
    );
    assert_eq!(
        refused(&[b"delete", b"x", b"y"]),
        "Message received with 3 arguments instead of 2."
    );
    assert_eq!(
        refused(&[b"set_transaction_id", b"x"]),
        "Message received with 2 arguments instead of 3."
    );
}

#[test]
fn dev_id_forms_accepted() {
    for (arg, id) in [
        (&b"5"[..], 5),
        (b"+5", 5),
        (b"5\n", 5),
        (b"+5\n", 5),
        (b"0005", 5),
        (b"0", 0),
        (b"+0", 0),
    ] {
        assert_eq!(ok(&[b"create_thin", arg]), Message::CreateThin { id });
        assert_eq!(ok(&[b"delete", arg]), Message::Delete { id });
        assert_eq!(
            ok(&[b"create_snap", arg, arg]),
            Message::CreateSnap { id, origin: id }
        );
    }
}

#[test]
fn dev_id_forms_refused() {
    for arg in [
        &b"0x5"[..],
        b"0X5",
        b"",
        b" 5",
        b"5 ",
        b"-5",
        b"-0",
        b"++5",
        b"+",
        b"\n",
        b"+\n",
        b"5\n\n",
        b"\n5",
        b"5a",
        b"five",
        b"1e3",
        b"5.0",
    ] {
        let want = format!("{BAD_ID}{}", std::str::from_utf8(arg).unwrap());
        assert_eq!(refused(&[b"create_thin", arg]), want, "{arg:?}");
        assert_eq!(refused(&[b"delete", arg]), want, "{arg:?}");
        assert_eq!(refused(&[b"create_snap", arg, b"1"]), want, "{arg:?}");
        assert_eq!(refused(&[b"create_snap", b"1", arg]), want, "{arg:?}");
    }
}

#[test]
fn dev_id_limit() {
    assert_eq!(
        ok(&[b"create_thin", b"16777215"]),
        Message::CreateThin { id: 16_777_215 }
    );
    assert_eq!(
        ok(&[b"create_snap", b"16777215", b"16777215"]),
        Message::CreateSnap {
            id: 16_777_215,
            origin: 16_777_215
        }
    );
    assert_eq!(
        ok(&[b"delete", b"16777215"]),
        Message::Delete { id: 16_777_215 }
    );
    for arg in [
        &b"16777216"[..],
        b"4294967296",
        b"18446744073709551615",
        b"18446744073709551616",
        b"99999999999999999999999",
    ] {
        let want = format!("{BAD_ID}{}", std::str::from_utf8(arg).unwrap());
        assert_eq!(refused(&[b"create_thin", arg]), want);
        assert_eq!(refused(&[b"delete", arg]), want);
        assert_eq!(refused(&[b"create_snap", arg, b"0"]), want);
        assert_eq!(refused(&[b"create_snap", b"0", arg]), want);
    }
}

#[test]
fn create_snap_checks_id_before_origin() {
    let e = parse(&[b"create_snap", b"x", b"y"]).unwrap_err();
    assert_eq!(e.warning, Warning::InvalidDevId(b"x"));
    assert_eq!(format!("{}", e.warning), format!("{BAD_ID}x"));
    assert_eq!(
        refused(&[b"create_snap", b"16777216", b"y"]),
        format!("{BAD_ID}16777216")
    );
    assert_eq!(refused(&[b"create_snap", b"1", b"y"]), format!("{BAD_ID}y"));
}

#[test]
fn transaction_ids_refused() {
    let e = parse(&[b"set_transaction_id", b"x", b"y"]).unwrap_err();
    assert_eq!(e.errno, 22);
    assert_eq!(e.warning, Warning::UnrecognisedId(b"x"));
    assert_eq!(
        format!("{}", e.warning),
        "set_transaction_id message: Unrecognised id x."
    );
    assert_eq!(
        refused(&[b"set_transaction_id", b"1", b"y"]),
        "set_transaction_id message: Unrecognised new id y."
    );
    // u64 overflow.
    assert_eq!(
        refused(&[b"set_transaction_id", b"18446744073709551616", b"1"]),
        "set_transaction_id message: Unrecognised id 18446744073709551616."
    );
    assert_eq!(
        refused(&[b"set_transaction_id", b"1", b"18446744073709551616"]),
        "set_transaction_id message: Unrecognised new id 18446744073709551616."
    );
    for arg in [&b"0x5"[..], b"", b" 5", b"-1", b"++1", b"1\n\n"] {
        let text = std::str::from_utf8(arg).unwrap();
        assert_eq!(
            refused(&[b"set_transaction_id", arg, b"1"]),
            format!("set_transaction_id message: Unrecognised id {text}.")
        );
        assert_eq!(
            refused(&[b"set_transaction_id", b"1", arg]),
            format!("set_transaction_id message: Unrecognised new id {text}.")
        );
    }
    assert_eq!(
        ok(&[b"set_transaction_id", b"+7\n", b"0008"]),
        Message::SetTransactionId { current: 7, new: 8 }
    );
}

#[test]
fn failure_warnings() {
    assert_eq!(
        failure(&[b"create_thin", b"5"]),
        "Creation of new thinly-provisioned device with id 5 failed."
    );
    assert_eq!(
        failure(&[b"create_snap", b"6", b"5"]),
        "Creation of new snapshot 6 of device 5 failed."
    );
    assert_eq!(
        failure(&[b"delete", b"5"]),
        "Deletion of thin device 5 failed."
    );
    assert_eq!(
        failure(&[b"set_transaction_id", b"1", b"2"]),
        "Failed to change transaction id from 1 to 2."
    );
    assert_eq!(
        failure(&[b"reserve_metadata_snap"]),
        "reserve_metadata_snap message failed."
    );
    assert_eq!(
        failure(&[b"release_metadata_snap"]),
        "release_metadata_snap message failed."
    );
}

#[test]
fn failure_warnings_print_the_words_as_received() {
    assert_eq!(
        failure(&[b"CREATE_THIN", b"+005"]),
        "Creation of new thinly-provisioned device with id +005 failed."
    );
    assert_eq!(
        failure(&[b"create_snap", b"7\n", b"+0"]),
        "Creation of new snapshot 7\n of device +0 failed."
    );
    assert_eq!(
        failure(&[b"Delete", b"016777215"]),
        "Deletion of thin device 016777215 failed."
    );
    assert_eq!(
        failure(&[b"set_transaction_id", b"+1", b"0002\n"]),
        "Failed to change transaction id from +1 to 0002\n."
    );
    let argv: &[&[u8]] = &[b"create_snap", b"00", b"01"];
    assert_eq!(
        failure_warning(argv, &ok(argv)),
        FailureWarning::CreateSnap {
            id: b"00",
            origin: b"01"
        }
    );
}

#[test]
fn failure_warning_with_missing_words_does_not_panic() {
    let m = Message::CreateSnap { id: 1, origin: 2 };
    assert_eq!(
        format!("{}", failure_warning(&[], &m)),
        "Creation of new snapshot  of device  failed."
    );
    let m = Message::SetTransactionId { current: 1, new: 2 };
    assert_eq!(
        format!("{}", failure_warning(&[b"set_transaction_id", b"1"], &m)),
        "Failed to change transaction id from 1 to ."
    );
}

#[test]
fn non_utf8_words_print_lossily() {
    assert_eq!(refused(&[b"create_thin", b"\xff5"]), format!("{BAD_ID}?5"));
    // Valid multi-byte UTF-8 prints as it is; an invalid or cut sequence
    // prints one '?' per byte.
    assert_eq!(
        refused(&[b"delete", "5\u{e9}".as_bytes()]),
        format!("{BAD_ID}5\u{e9}")
    );
    assert_eq!(refused(&[b"delete", b"5\xe2\x82"]), format!("{BAD_ID}5??"));
    assert_eq!(
        refused(&[b"delete", b"\xc3\x28\xe2\x82\xac\x80"]),
        format!("{BAD_ID}?(\u{20ac}?")
    );
    assert_eq!(
        refused(&[b"set_transaction_id", b"\x80\x80", b"1"]),
        "set_transaction_id message: Unrecognised id ??."
    );
    assert_eq!(
        refused(&[b"\xfe\xff"]),
        "Unrecognised thin pool target message received: ??"
    );
}

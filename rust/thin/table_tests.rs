//! Unit tests of the table-line parsing steps against upstream's rules.

use super::*;

fn args<'a>(s: &'a str) -> std::vec::Vec<&'a [u8]> {
    s.split_whitespace().map(str::as_bytes).collect()
}

#[test]
fn pool_argument_count() {
    for line in ["", "a", "a b", "a b 128"] {
        assert_eq!(
            pool_check_args(&args(line)).unwrap_err().msg(),
            "Invalid argument count"
        );
    }
    assert!(pool_check_args(&args("a b 128 0")).is_ok());
}

#[test]
fn pool_same_devices_compared_as_strings() {
    let e = pool_check_args(&args("/dev/x /dev/x 128 0")).unwrap_err();
    assert_eq!(e.msg(), "Error setting metadata or data device");
    assert_eq!(e.errno, 22);
    // Same device under two spellings is not caught here (upstream neither).
    assert!(pool_check_args(&args("/dev/x 7:0 128 0")).is_ok());
}

#[test]
fn pool_features() {
    let pf = pool_check_args(&args("m d 128 0 2 SKIP_block_zeroing Error_If_No_Space")).unwrap();
    assert!(!pf.zero_new_blocks && pf.error_if_no_space && pf.discard_enabled);
    let words: std::vec::Vec<_> = pf.words().collect();
    assert_eq!(words, ["skip_block_zeroing", "error_if_no_space"]);
    let pf = pool_check_args(&args("m d 128 0 1 read_only")).unwrap();
    assert_eq!(pf.mode, RequestedMode::ReadOnly);
    // Extra words after the group are ignored.
    assert!(pool_check_args(&args("m d 128 0 1 ignore_discard junk")).is_ok());
    assert_eq!(
        pool_check_args(&args("m d 128 0 0")).unwrap(),
        PoolFeatures::default()
    );
}

#[test]
fn pool_feature_errors() {
    let count = "Invalid number of pool feature arguments";
    for line in [
        "m d 128 0 5 a b c d e",
        "m d 128 0 2 ignore_discard",
        "m d 128 0 x",
        "m d 128 0 1x read_only",
        "m d 128 0 -1 read_only",
        "m d 128 0 +1 read_only",
    ] {
        assert_eq!(
            pool_check_args(&args(line)).unwrap_err().msg(),
            count,
            "{line}"
        );
    }
    let e = pool_check_args(&args("m d 128 0 1 zero_blocks")).unwrap_err();
    assert_eq!(e.msg(), "Unrecognised pool feature requested");
}

#[test]
fn block_size_rules() {
    for ok in ["128", "256", "+384", "2097152", "1024\n"] {
        assert!(pool_block_size(ok.as_bytes()).is_ok(), "{ok}");
    }
    for bad in [
        "0",
        "64",
        "127",
        "129",
        "2097280",
        "x",
        "",
        "-128",
        " 128",
        "128 ",
        "99999999999999999999999",
    ] {
        assert_eq!(
            pool_block_size(bad.as_bytes()).unwrap_err().msg(),
            "Invalid block size",
            "{bad:?}"
        );
    }
    assert_eq!(pool_block_size(b"384"), Ok(384));
}

#[test]
fn low_water_mark() {
    assert_eq!(pool_low_water_mark(b"18446744073709551615"), Ok(u64::MAX));
    assert!(pool_low_water_mark(b"18446744073709551616").is_err());
    assert!(pool_low_water_mark(b"-1").is_err());
}

#[test]
fn thin_lines() {
    assert_eq!(
        thin_check_args(&args("p")).unwrap_err().msg(),
        "Invalid argument count"
    );
    assert_eq!(
        thin_check_args(&args("p 1 o x")).unwrap_err().msg(),
        "Invalid argument count"
    );
    assert_eq!(
        thin_check_args(&args("p 1 p")).unwrap_err().msg(),
        "Error setting origin device"
    );
    assert!(thin_check_args(&args("p 1 o")).is_ok());
    assert_eq!(thin_dev_id(b"16777215"), Ok(16_777_215));
    assert_eq!(
        thin_dev_id(b"16777216").unwrap_err().msg(),
        "Invalid device id"
    );
    assert!(thin_dev_id(b"0x10").is_err());
}

#[test]
fn scan_u32_wraps_like_vsscanf() {
    assert_eq!(scan_u32(b" 3"), Some(3));
    assert_eq!(scan_u32(b"-1"), None);
    assert_eq!(scan_u32(b"+1"), None);
    assert_eq!(scan_u32(b"\t 2"), Some(2));
    assert_eq!(scan_u32(b"4294967297"), Some(1));
    assert_eq!(scan_u32(b"3 "), None);
}

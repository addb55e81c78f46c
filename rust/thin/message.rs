// SPDX-License-Identifier: GPL-2.0

//! Parsing of `thin-pool` target messages, step by step as upstream's
//! `pool_message` (6.12 `drivers/md/dm-thin.c`) does it, with upstream's
//! warnings and errno.
//!
//! Pure code (core only) so the host tests check it with cargo.  The
//! caller keeps the parts that touch the pool, in upstream's order:
//!
//! 1. refuse the message with -EOPNOTSUPP in read-only or fail mode
//!    (before any parsing, as upstream does);
//! 2. [`parse`]; on an error, log its [`MessageError::warning`] with
//!    `DMWARN` and return `-errno`;
//! 3. run the operation (`reserve_metadata_snap` commits first); on a
//!    failure, log [`failure_warning`] with `DMWARN` and return the
//!    operation's error;
//! 4. on success, commit (upstream ignores the commit's result).
//!
//! Every warning is the text upstream logs after its
//! `device-mapper: thin: ` prefix, without the trailing newline; the
//! message's own words are printed from the original argument text (not
//! re-formatted numbers), bytes that are not UTF-8 as `?`.
//!
//! The module mounts this file next to `table.rs` (it uses
//! [`super::table::kstrtoull`] and [`super::table::dev_id`]).

use core::fmt;

use super::table::{dev_id, kstrtoull};

/// `EINVAL`: the errno of every refused message.
const EINVAL: i32 = 22;

/// A parsed `thin-pool` message, ready to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message {
    /// `create_thin <dev id>`: `dm_pool_create_thin`.
    CreateThin {
        /// The new device's id (at most `MAX_DEV_ID`).
        id: u64,
    },
    /// `create_snap <dev id> <origin id>`: `dm_pool_create_snap`.
    CreateSnap {
        /// The new snapshot's id (at most `MAX_DEV_ID`).
        id: u64,
        /// The origin device's id (at most `MAX_DEV_ID`).
        origin: u64,
    },
    /// `delete <dev id>`: `dm_pool_delete_thin_device`.
    Delete {
        /// The id of the device to delete (at most `MAX_DEV_ID`).
        id: u64,
    },
    /// `set_transaction_id <current id> <new id>`:
    /// `dm_pool_set_metadata_transaction_id`.
    SetTransactionId {
        /// The transaction id the metadata must hold now.
        current: u64,
        /// The transaction id to store.
        new: u64,
    },
    /// `reserve_metadata_snap`: commit, then
    /// `dm_pool_reserve_metadata_snap`.
    ReserveMetadataSnap,
    /// `release_metadata_snap`: `dm_pool_release_metadata_snap`.
    ReleaseMetadataSnap,
}

/// A refused message: the warning upstream logs (without the
/// `device-mapper: thin: ` prefix) and the positive errno (always 22,
/// `EINVAL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageError<'a> {
    /// Positive errno to return (negated) from the message handler.
    pub errno: i32,
    /// The warning to log with `DMWARN`.
    pub warning: Warning<'a>,
}

/// Why a message was refused; [`fmt::Display`] gives upstream's warning
/// text.  Borrowed pieces are the original message words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Warning<'a> {
    /// No words at all (dm core refuses such messages before the target
    /// sees them): `Empty message received.`, dm core's own warning.
    EmptyMessage,
    /// `Unrecognised thin pool target message received: <name>`.
    UnknownMessage(&'a [u8]),
    /// `Message received with <got> arguments instead of <want>.` (the
    /// counts include the message name).
    ArgCount {
        /// Number of words received, the name included.
        got: usize,
        /// Number of words the message takes, the name included.
        want: usize,
    },
    /// `Message received with invalid device id: <arg>`.
    InvalidDevId(&'a [u8]),
    /// `set_transaction_id message: Unrecognised id <arg>.`.
    UnrecognisedId(&'a [u8]),
    /// `set_transaction_id message: Unrecognised new id <arg>.`.
    UnrecognisedNewId(&'a [u8]),
}

impl fmt::Display for Warning<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Warning::EmptyMessage => f.write_str("Empty message received."),
            Warning::UnknownMessage(name) => write!(
                f,
                "Unrecognised thin pool target message received: {}",
                Text(name)
            ),
            Warning::ArgCount { got, want } => write!(
                f,
                "Message received with {got} arguments instead of {want}."
            ),
            Warning::InvalidDevId(arg) => {
                write!(f, "Message received with invalid device id: {}", Text(arg))
            }
            Warning::UnrecognisedId(arg) => write!(
                f,
                "set_transaction_id message: Unrecognised id {}.",
                Text(arg)
            ),
            Warning::UnrecognisedNewId(arg) => write!(
                f,
                "set_transaction_id message: Unrecognised new id {}.",
                Text(arg)
            ),
        }
    }
}

/// The warning upstream logs when a parsed message's operation fails;
/// [`fmt::Display`] gives the text.  Borrowed pieces are the original
/// message words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureWarning<'a> {
    /// `Creation of new thinly-provisioned device with id <id> failed.`
    CreateThin {
        /// The id word as received.
        id: &'a [u8],
    },
    /// `Creation of new snapshot <id> of device <origin> failed.`
    CreateSnap {
        /// The snapshot id word as received.
        id: &'a [u8],
        /// The origin id word as received.
        origin: &'a [u8],
    },
    /// `Deletion of thin device <id> failed.`
    Delete {
        /// The id word as received.
        id: &'a [u8],
    },
    /// `Failed to change transaction id from <current> to <new>.`
    SetTransactionId {
        /// The current id word as received.
        current: &'a [u8],
        /// The new id word as received.
        new: &'a [u8],
    },
    /// `reserve_metadata_snap message failed.`
    ReserveMetadataSnap,
    /// `release_metadata_snap message failed.`
    ReleaseMetadataSnap,
}

impl fmt::Display for FailureWarning<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FailureWarning::CreateThin { id } => write!(
                f,
                "Creation of new thinly-provisioned device with id {} failed.",
                Text(id)
            ),
            FailureWarning::CreateSnap { id, origin } => write!(
                f,
                "Creation of new snapshot {} of device {} failed.",
                Text(id),
                Text(origin)
            ),
            FailureWarning::Delete { id } => {
                write!(f, "Deletion of thin device {} failed.", Text(id))
            }
            FailureWarning::SetTransactionId { current, new } => write!(
                f,
                "Failed to change transaction id from {} to {}.",
                Text(current),
                Text(new)
            ),
            FailureWarning::ReserveMetadataSnap => {
                f.write_str("reserve_metadata_snap message failed.")
            }
            FailureWarning::ReleaseMetadataSnap => {
                f.write_str("release_metadata_snap message failed.")
            }
        }
    }
}

/// A message word printed as `%s` would, except that bytes which are not
/// UTF-8 are printed as one `?` each.
struct Text<'a>(&'a [u8]);

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        loop {
            match core::str::from_utf8(rest) {
                Ok(s) => return f.write_str(s),
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    // `good` is valid UTF-8 by `valid_up_to`'s contract.
                    f.write_str(core::str::from_utf8(good).unwrap_or(""))?;
                    // An incomplete sequence at the end is all invalid.
                    let n = e.error_len().unwrap_or(bad.len()).min(bad.len());
                    for _ in 0..n {
                        f.write_str("?")?;
                    }
                    rest = bad.get(n..).unwrap_or(&[]);
                    if rest.is_empty() {
                        return Ok(());
                    }
                }
            }
        }
    }
}

fn refuse(warning: Warning<'_>) -> MessageError<'_> {
    MessageError {
        errno: EINVAL,
        warning,
    }
}

/// `check_arg_count`: exactly `want` words, the name included.
fn check_arg_count<'a>(argv: &[&'a [u8]], want: usize) -> Result<(), MessageError<'a>> {
    if argv.len() == want {
        Ok(())
    } else {
        Err(refuse(Warning::ArgCount {
            got: argv.len(),
            want,
        }))
    }
}

/// `read_dev_id` with its warning.
fn read_dev_id(arg: &[u8]) -> Result<u64, MessageError<'_>> {
    dev_id(arg).ok_or_else(|| refuse(Warning::InvalidDevId(arg)))
}

/// Parses a `thin-pool` message as upstream's `pool_message` does:
/// `argv[0]` names the message (ASCII case-insensitive, the whole word),
/// then the argument count is checked (the name included), then the
/// arguments in order (`create_snap`'s id before its origin).  Device ids
/// are `kstrtoull` base 10 and at most `MAX_DEV_ID` (2^24 - 1); transaction
/// ids are any `kstrtoull` base 10 value.
///
/// The pool mode check (-EOPNOTSUPP in read-only or fail mode) comes
/// before this and is the caller's.  An empty `argv` (which dm core never
/// passes) is refused with [`Warning::EmptyMessage`].
pub fn parse<'a>(argv: &[&'a [u8]]) -> Result<Message, MessageError<'a>> {
    let Some(&name) = argv.first() else {
        return Err(refuse(Warning::EmptyMessage));
    };
    let is = |word: &str| name.eq_ignore_ascii_case(word.as_bytes());
    if is("create_thin") {
        check_arg_count(argv, 2)?;
        let id = read_dev_id(word(argv, 1))?;
        Ok(Message::CreateThin { id })
    } else if is("create_snap") {
        check_arg_count(argv, 3)?;
        let id = read_dev_id(word(argv, 1))?;
        let origin = read_dev_id(word(argv, 2))?;
        Ok(Message::CreateSnap { id, origin })
    } else if is("delete") {
        check_arg_count(argv, 2)?;
        let id = read_dev_id(word(argv, 1))?;
        Ok(Message::Delete { id })
    } else if is("set_transaction_id") {
        check_arg_count(argv, 3)?;
        let old = word(argv, 1);
        let current = kstrtoull(old).ok_or_else(|| refuse(Warning::UnrecognisedId(old)))?;
        let new_word = word(argv, 2);
        let new =
            kstrtoull(new_word).ok_or_else(|| refuse(Warning::UnrecognisedNewId(new_word)))?;
        Ok(Message::SetTransactionId { current, new })
    } else if is("reserve_metadata_snap") {
        check_arg_count(argv, 1)?;
        Ok(Message::ReserveMetadataSnap)
    } else if is("release_metadata_snap") {
        check_arg_count(argv, 1)?;
        Ok(Message::ReleaseMetadataSnap)
    } else {
        Err(refuse(Warning::UnknownMessage(name)))
    }
}

/// Word `i` of `argv`, or an empty word if there is none (never after a
/// successful argument count check).
fn word<'a>(argv: &[&'a [u8]], i: usize) -> &'a [u8] {
    argv.get(i).copied().unwrap_or(&[])
}

/// The warning upstream logs when `msg`'s operation fails, with the words
/// of `argv` (the words `msg` was parsed from) as they were received, e.g.
/// `Creation of new thinly-provisioned device with id 5 failed.`.  A word
/// missing from `argv` prints as empty.
pub fn failure_warning<'a>(argv: &[&'a [u8]], msg: &Message) -> FailureWarning<'a> {
    match msg {
        Message::CreateThin { .. } => FailureWarning::CreateThin { id: word(argv, 1) },
        Message::CreateSnap { .. } => FailureWarning::CreateSnap {
            id: word(argv, 1),
            origin: word(argv, 2),
        },
        Message::Delete { .. } => FailureWarning::Delete { id: word(argv, 1) },
        Message::SetTransactionId { .. } => FailureWarning::SetTransactionId {
            current: word(argv, 1),
            new: word(argv, 2),
        },
        Message::ReserveMetadataSnap => FailureWarning::ReserveMetadataSnap,
        Message::ReleaseMetadataSnap => FailureWarning::ReleaseMetadataSnap,
    }
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;

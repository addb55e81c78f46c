//! The error type of the persistent-data layer: a small `Copy` enum with no
//! context; callers add context, and the kernel side maps it to an errno in
//! one place.

/// What went wrong in a persistent-data operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The device returned an I/O error (EIO).
    Io,
    /// A block failed validation or a structure is inconsistent (EILSEQ,
    /// or ENOTBLK for a block that is not where it says it is).
    Corrupt(Corruption),
    /// No free block left in a space map (ENOSPC).
    NoSpace,
    /// A memory allocation failed (ENOMEM).
    NoMem,
    /// A non-blocking lookup needs I/O (EWOULDBLOCK).
    WouldBlock,
    /// The key or device does not exist (ENODATA).
    NotFound,
    /// The block manager is read-only (EPERM).
    ReadOnly,
    /// An argument or request is invalid (EINVAL).
    Invalid,
    /// The key or device already exists (EEXIST).
    Exists,
    /// The object is in use (EBUSY).
    Busy,
}

/// The kind of corruption found, for logs and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// The checksum does not match the block contents.
    Checksum,
    /// The block's self pointer is not its location (upstream: ENOTBLK).
    Location,
    /// A magic number is wrong.
    Magic,
    /// A btree node header or key order is invalid.
    Node,
    /// A space-map bitmap, index or count is invalid.
    SpaceMap,
    /// A block number read from disk is out of the device's range.
    OutOfRange,
    /// A tree is deeper than any valid tree could be, or has a cycle.
    Depth,
    /// A superblock field is invalid.
    Superblock,
    /// A thin metadata structure is inconsistent.
    Metadata,
}

impl Error {
    /// The positive errno value upstream returns for this error.
    pub fn errno(self) -> i32 {
        match self {
            Error::Io => 5,                             // EIO
            Error::Corrupt(Corruption::Location) => 15, // ENOTBLK
            Error::Corrupt(_) => 84,                    // EILSEQ
            Error::NoSpace => 28,                       // ENOSPC
            Error::NoMem => 12,                         // ENOMEM
            Error::WouldBlock => 11,                    // EWOULDBLOCK
            Error::NotFound => 61,                      // ENODATA
            Error::ReadOnly => 1,                       // EPERM
            Error::Invalid => 22,                       // EINVAL
            Error::Exists => 17,                        // EEXIST
            Error::Busy => 16,                          // EBUSY
        }
    }
}

/// Result of a persistent-data operation.
pub type Result<T> = core::result::Result<T, Error>;

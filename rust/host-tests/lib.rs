//! Host-side test support for the persistent-data layer (std allowed here).

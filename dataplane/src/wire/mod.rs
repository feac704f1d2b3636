//! Zero-copy packet header views (to be written).

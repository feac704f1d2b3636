//! Helpers for fiberlb's end-to-end tests.

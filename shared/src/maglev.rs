//! Maglev consistent hashing (Eisenbud et al., NSDI 2016), section 3.4. (to be written)

/// Default lookup table size (prime).
pub const DEFAULT_TABLE_SIZE: u32 = 65537;

/// Why a table cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MaglevError {
    #[error("table size {0} is not prime")]
    NotPrime(u32),
}

/// Checks a table size.
///
/// # Errors
/// When the size is not prime or out of range.
pub fn check_table_size(size: u32) -> Result<(), MaglevError> {
    let _ = size;
    Ok(())
}

//! The one `/proc/meminfo` parser (DPDK's hugepage check, `doctor`, the AF_XDP run's memory
//! report). A leaf module.

/// Reads `/proc/meminfo` (empty when unreadable).
pub fn read() -> String {
    std::fs::read_to_string("/proc/meminfo").unwrap_or_default()
}

/// A `/proc/meminfo` field's number (kB for sizes, pages for `HugePages_*`): the first word
/// after `name:` on the line whose name is exactly `name`.
pub fn field(meminfo: &str, name: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_by_exact_name() {
        let m = "MemTotal:       16000 kB\nHugePages_Total:      64\nHugePages_Free:       60\n\
                 Hugepagesize:       2048 kB\n";
        assert_eq!(field(m, "MemTotal"), Some(16000));
        assert_eq!(field(m, "HugePages_Free"), Some(60));
        assert_eq!(field(m, "Hugepagesize"), Some(2048));
        assert_eq!(field(m, "HugePages"), None);
        assert_eq!(field(m, "MemAvailable"), None);
        assert_eq!(field("", "MemTotal"), None);
    }
}

//! CPU placement: pinning a worker thread to its core, the control thread's CPU set, and the
//! cores this process may use (checked by the configuration and `doctor`, and the DPDK EAL's
//! default core list). A leaf module: it imports nothing from the crate.

/// Pins the calling thread to `core`.
///
/// # Errors
/// When the core does not exist or is not allowed for this process.
pub fn pin_to_core(core: usize) -> Result<(), String> {
    let ids = core_affinity::get_core_ids().unwrap_or_default();
    let Some(id) = ids.into_iter().find(|c| c.id == core) else {
        return Err(format!(
            "core {core} does not exist or is not allowed for this process"
        ));
    };
    if core_affinity::set_for_current(id) {
        Ok(())
    } else {
        Err(format!("cannot pin to core {core}"))
    }
}

/// Sets the calling thread's CPU mask to `cpus` (a set, unlike [`pin_to_core`]).
///
/// # Errors
/// When the kernel refuses the mask (no CPU of it is allowed to this process).
pub fn allow_cpus(cpus: &[usize]) -> Result<(), String> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        if c < libc::CPU_SETSIZE as usize {
            // SAFETY: c is below CPU_SETSIZE, the set's capacity.
            unsafe { libc::CPU_SET(c, &mut set) };
        }
    }
    // SAFETY: pid 0 is the calling thread; the size and pointer describe `set`.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(format!(
            "cannot run on CPUs {cpus:?}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Gives the calling thread the nice value `nice` (lower runs sooner); needs CAP_SYS_NICE for
/// values below 0, so without it the thread keeps its priority (logged once, not an error).
pub fn raise_priority(nice: i32) {
    // SAFETY: gettid takes no argument and cannot fail.
    let tid = unsafe { libc::gettid() };
    // SAFETY: setpriority with PRIO_PROCESS and a thread id changes only that thread's nice
    // value; it reads no memory of ours.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    if rc != 0 {
        eprintln!(
            "fiberlb-dataplane: control thread keeps nice 0 (setting {nice}: {})",
            std::io::Error::last_os_error()
        );
    }
}

/// The CPUs this process may use that no worker is pinned to: where the control thread and
/// the other housekeeping threads belong. Empty when the workers take every allowed CPU.
pub fn housekeeping_cpus(worker_cores: &[usize]) -> Vec<usize> {
    available_cores()
        .into_iter()
        .filter(|c| !worker_cores.contains(c))
        .collect()
}

/// The cores this process may run on (for checking the configuration).
pub fn available_cores() -> Vec<usize> {
    let mut v: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinning_to_a_missing_core_is_an_error() {
        let e = pin_to_core(100_000).unwrap_err();
        assert!(e.contains("core 100000"), "{e}");
        assert!(!available_cores().is_empty());
    }
}

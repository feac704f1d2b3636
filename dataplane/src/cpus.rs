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

/// The scheduling the calling thread ended up with after [`raise_priority`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// SCHED_FIFO at this real-time priority.
    Fifo(i32),
    /// SCHED_OTHER at this nice value.
    Nice(i32),
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Priority::Fifo(p) => write!(f, "SCHED_FIFO {p}"),
            Priority::Nice(n) => write!(f, "nice {n}"),
        }
    }
}

/// Raises the calling thread's priority: SCHED_FIFO at `fifo` when given and allowed, else the
/// nice value `nice` (lower runs sooner), else it keeps what it has. Real time needs root,
/// CAP_SYS_NICE or an RLIMIT_RTPRIO of at least `fifo` (systemd: `LimitRTPRIO=`) and no
/// `RestrictRealtime=yes`; a negative nice needs CAP_SYS_NICE or RLIMIT_NICE (`LimitNICE=`).
/// What was refused is logged, never an error. Returns what the thread has now.
pub fn raise_priority(fifo: Option<i32>, nice: i32) -> Priority {
    let mut refused = Vec::new();
    if let Some(prio) = fifo {
        let param = libc::sched_param {
            sched_priority: prio,
        };
        // SAFETY: pid 0 is the calling thread (Linux schedules threads, not processes);
        // `param` is a valid sched_param for the duration of the call. RESET_ON_FORK: a
        // thread or process it starts does not inherit real time.
        let rc = unsafe {
            libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &param)
        };
        if rc == 0 {
            return Priority::Fifo(prio);
        }
        refused.push(format!(
            "SCHED_FIFO {prio}: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: gettid takes no argument and cannot fail.
    let tid = unsafe { libc::gettid() };
    // SAFETY: setpriority with PRIO_PROCESS and a thread id changes only that thread's nice
    // value; it reads no memory of ours.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    let now = if rc == 0 {
        Priority::Nice(nice)
    } else {
        refused.push(format!("nice {nice}: {}", std::io::Error::last_os_error()));
        // SAFETY: as above; getpriority only reads the thread's nice value.
        Priority::Nice(unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) })
    };
    if !refused.is_empty() {
        eprintln!(
            "fiberlb-dataplane: control thread runs at {now} (refused: {})",
            refused.join("; ")
        );
    }
    now
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

    /// The policy the kernel reports for the calling thread (without the reset-on-fork flag).
    fn policy() -> i32 {
        // SAFETY: pid 0 is the calling thread; no memory is passed.
        unsafe { libc::sched_getscheduler(0) & !libc::SCHED_RESET_ON_FORK }
    }

    #[test]
    fn raise_priority_reports_what_the_kernel_gave() {
        // On a thread of its own: the test harness's threads keep their priority.
        std::thread::spawn(|| {
            let got = raise_priority(Some(1), -10);
            match got {
                Priority::Fifo(1) => assert_eq!(policy(), libc::SCHED_FIFO),
                Priority::Nice(_) => assert_eq!(policy(), libc::SCHED_OTHER),
                other => panic!("unexpected {other:?}"),
            }
            // A thread it starts does not inherit real time, and without it asked for gets none.
            std::thread::spawn(|| {
                assert_eq!(policy(), libc::SCHED_OTHER);
                assert_eq!(raise_priority(None, 0), Priority::Nice(0));
                assert_eq!(policy(), libc::SCHED_OTHER);
            })
            .join()
            .unwrap();
        })
        .join()
        .unwrap();
    }

    #[test]
    fn pinning_to_a_missing_core_is_an_error() {
        let e = pin_to_core(100_000).unwrap_err();
        assert!(e.contains("core 100000"), "{e}");
        assert!(!available_cores().is_empty());
    }
}

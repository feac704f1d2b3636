//! The few system calls the generator needs beyond the AF_XDP layer: network namespaces per
//! thread, CPU pinning and the monotonic clock both ends stamp with.

use std::fs::File;
use std::os::fd::AsRawFd;

/// Moves the calling thread into the network namespace `name` (as made by `ip netns add`).
/// Only this thread changes namespace: the generator and the sink live in different ones.
pub fn enter_netns(name: &str) -> std::io::Result<()> {
    let path = if name.starts_with('/') {
        name.to_string()
    } else {
        format!("/var/run/netns/{name}")
    };
    let f = File::open(&path).map_err(|e| {
        std::io::Error::new(e.kind(), format!("opening network namespace {path}: {e}"))
    })?;
    // SAFETY: setns with a valid open namespace fd and CLONE_NEWNET only changes the calling
    // thread's network namespace; `f` outlives the call.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Pins the calling thread to `core`.
pub fn pin(core: usize) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if core >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
        return Err(std::io::Error::other(format!("core {core} out of range")));
    }
    // SAFETY: `core` is below CPU_SETSIZE (checked above); `set` is a valid cpu_set_t.
    unsafe { libc::CPU_SET(core, &mut set) };
    // SAFETY: pid 0 = the calling thread; `set` is valid for the size passed.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of the payload timestamps (a vDSO call, no
/// system call). Two processes on one host read the same clock.
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// The CPU the calling thread runs on now.
pub fn current_cpu() -> i32 {
    // SAFETY: sched_getcpu has no preconditions.
    unsafe { libc::sched_getcpu() }
}

/// Lets this thread's short sleeps end on time (the default timer slack adds 50 us to each,
/// which the sink's idle back-off would otherwise add to every measured latency).
pub fn fine_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument (nanoseconds) and only affects the
    // calling thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong) };
}

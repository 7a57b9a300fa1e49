//! CPU time of this process, from getrusage(2).

use std::mem::MaybeUninit;
use std::ops::Sub;

/// User and system CPU seconds, all threads of the process together. Work done for the
/// process by kernel threads (io_uring's SQPOLL thread, its io-wq workers) is not in it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuTime {
    /// Seconds in user mode.
    pub user_s: f64,
    /// Seconds in the kernel on the process's behalf.
    pub sys_s: f64,
}

impl CpuTime {
    /// The process's CPU time so far.
    pub fn now() -> CpuTime {
        let mut usage = MaybeUninit::<libc::rusage>::zeroed();
        // `getrusage` writes one rusage through the pointer, which points to memory
        // of that type; RUSAGE_SELF is a valid `who`.
        // SAFETY: getrusage writes only into `usage`.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
        // It fails only for a bad `who` or pointer, neither of which can happen here.
        assert_eq!(rc, 0, "getrusage(RUSAGE_SELF) failed");
        // Zero-initialised and then filled by a successful getrusage; every field is
        // a plain integer, for which any bit pattern is valid.
        // SAFETY: `usage` is initialised.
        let usage = unsafe { usage.assume_init() };
        let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 * 1e-6;
        CpuTime {
            user_s: secs(usage.ru_utime),
            sys_s: secs(usage.ru_stime),
        }
    }

    /// User plus system seconds.
    pub fn total_s(&self) -> f64 {
        self.user_s + self.sys_s
    }
}

impl Sub for CpuTime {
    type Output = CpuTime;

    fn sub(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user_s: self.user_s - earlier.user_s,
            sys_s: self.sys_s - earlier.sys_s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spinning_costs_user_time() {
        // Spin until the clock shows 20 ms of user time (on a loaded machine that takes
        // longer than 20 ms of wall time); it must get there, within a bound.
        let start = CpuTime::now();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        let mut used = CpuTime::now() - start;
        while used.user_s <= 0.02 && t.elapsed().as_secs() < 20 {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            used = CpuTime::now() - start;
        }
        assert!(used.user_s > 0.02, "{used:?} after {:?}", t.elapsed());
        assert!(used.sys_s >= 0.0, "{used:?}");
        assert!((used.total_s() - used.user_s - used.sys_s).abs() < 1e-12);
    }
}

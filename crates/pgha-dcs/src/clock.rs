//! The clock lease deadlines are kept in.

/// Milliseconds on CLOCK_BOOTTIME: monotonic, the same for every process of the machine, and,
/// unlike CLOCK_MONOTONIC, counting time spent suspended, during which etcd's leases run on.
pub fn boottime_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    (t.tv_sec as u64) * 1000 + (t.tv_nsec as u64) / 1_000_000
}

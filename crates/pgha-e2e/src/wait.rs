//! Bounded polling. Every wait in the harness and the scenarios goes through here, so none can
//! hang forever and every timeout says what it was waiting for and what it saw last.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

/// Calls `check` every `poll` until it returns `Ok(value)` or `timeout` has passed.
///
/// An `Err` from `check` means "not yet"; the last one is quoted in the timeout error, so make
/// it describe what was observed (`ensure!(rows == 2, "{rows} rows streaming")`).
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    poll: Duration,
    mut check: impl FnMut() -> Result<T>,
) -> Result<T> {
    let start = Instant::now();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let last = match check() {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if start.elapsed() >= timeout {
            return Err(anyhow!(
                "timed out after {:.1}s ({attempts} checks) waiting for {what}; last observation: {last:#}",
                start.elapsed().as_secs_f64()
            ));
        }
        let left = timeout.saturating_sub(start.elapsed());
        std::thread::sleep(poll.min(left).max(Duration::from_millis(1)));
    }
}

/// Like [`wait_until`] and also returns how long it took.
pub fn timed_wait<T>(
    what: &str,
    timeout: Duration,
    poll: Duration,
    check: impl FnMut() -> Result<T>,
) -> Result<(T, Duration)> {
    let start = Instant::now();
    let v = wait_until(what, timeout, poll, check)?;
    Ok((v, start.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::ensure;

    #[test]
    fn returns_first_success() {
        let mut n = 0;
        let v = wait_until(
            "n to reach 3",
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                n += 1;
                ensure!(n >= 3, "n={n}");
                Ok(n * 10)
            },
        )
        .unwrap();
        assert_eq!(v, 30);
    }

    #[test]
    fn times_out_with_description() {
        let err = wait_until::<()>(
            "the impossible",
            Duration::from_millis(30),
            Duration::from_millis(5),
            || Err(anyhow!("still nothing")),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("the impossible"), "{err}");
        assert!(err.contains("still nothing"), "{err}");
    }
}

//! 1000 seeded runs of the simulated cluster (pgha-sim), in each replication mode. A failing
//! seed prints its faults and trace; replay it with
//! `PGHA_SIM_SEED=<seed> PGHA_SIM_MODE=<sync|quorum|async> cargo test -p pgha-sim --test seeds -- --nocapture`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use pgha_sim::{simulate, Mode, Outcome, SimConfig};

fn mode_of(name: &str) -> Mode {
    match name {
        "async" => Mode::Async,
        "quorum" => Mode::Quorum,
        _ => Mode::Sync,
    }
}

/// Seed `s` runs in: sync for most, quorum and async for some.
fn mode_for(seed: u64) -> Mode {
    match seed % 5 {
        3 => Mode::Quorum,
        4 => Mode::Async,
        _ => Mode::Sync,
    }
}

fn config(mode: Mode) -> SimConfig {
    SimConfig {
        mode,
        ..SimConfig::default()
    }
}

#[test]
fn a_thousand_seeds_keep_every_invariant() {
    if let Ok(seed) = std::env::var("PGHA_SIM_SEED") {
        let seed: u64 = seed.parse().expect("PGHA_SIM_SEED is a number");
        let mode = std::env::var("PGHA_SIM_MODE")
            .map(|m| mode_of(&m))
            .unwrap_or_else(|_| mode_for(seed));
        let out = simulate(&config(mode), seed);
        println!("{}", out.report(usize::MAX));
        assert!(out.ok(), "seed {seed} failed");
        return;
    }
    let seeds: u64 = std::env::var("PGHA_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let next = Arc::new(AtomicU64::new(0));
    let failed: Arc<Mutex<Vec<(Mode, Outcome)>>> = Arc::default();
    let totals = Arc::new(AtomicU64::new(0));
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let (next, failed, totals) = (next.clone(), failed.clone(), totals.clone());
            std::thread::spawn(move || loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= seeds {
                    return;
                }
                let mode = mode_for(seed);
                let out = simulate(&config(mode), seed);
                totals.fetch_add(out.acknowledged as u64, Ordering::Relaxed);
                if !out.ok() {
                    failed.lock().expect("lock").push((mode, out));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a simulation thread panicked");
    }
    let mut failed = std::mem::take(&mut *failed.lock().expect("lock"));
    failed.sort_by_key(|(_, o)| o.seed);
    eprintln!(
        "pgha-sim: {seeds} seeds, {} acknowledged writes, {} failing",
        totals.load(Ordering::Relaxed),
        failed.len()
    );
    if let Some((mode, first)) = failed.first() {
        let list: Vec<String> = failed
            .iter()
            .map(|(m, o)| format!("{} ({m:?}): {}", o.seed, o.violations[0].what))
            .collect();
        panic!(
            "{} of {seeds} seeds broke an invariant:\n  {}\n\nfirst ({mode:?}):\n{}",
            failed.len(),
            list.join("\n  "),
            first.report(150)
        );
    }
}

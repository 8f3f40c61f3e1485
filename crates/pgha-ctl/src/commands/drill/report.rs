//! What a drill measured and how it is judged: pure functions over the load's log, plus the
//! table and JSON the command prints.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::table::{Align, Table};

/// One acknowledged commit on a node: the statement was sent at `start` and acknowledged at
/// `end` (since the load started), so the commit happened somewhere in between.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Commit {
    pub node: usize,
    pub start: Duration,
    pub end: Duration,
}

/// Commits on one node closer than this are taken as one stretch of writability.
pub const SAME_STRETCH: Duration = Duration::from_secs(1);

/// The longest time in [from, to] with no acknowledged write (`acks`: acknowledgement times).
pub fn write_gap(acks: &[Duration], from: Duration, to: Duration) -> Duration {
    let mut inside: Vec<Duration> = acks
        .iter()
        .copied()
        .filter(|t| *t >= from && *t <= to)
        .collect();
    inside.sort();
    let mut prev = from;
    let mut gap = Duration::ZERO;
    for t in inside.into_iter().chain(std::iter::once(to)) {
        gap = gap.max(t.saturating_sub(prev));
        prev = t;
    }
    gap
}

/// A stretch of commits on one node. Between the first acknowledgement and the last statement
/// sent the node was certainly writable (`certain`); each commit itself lies in [start, end].
#[derive(Debug, Clone)]
struct Stretch {
    node: usize,
    commits: Vec<Commit>,
}

impl Stretch {
    /// [first acknowledgement, last statement sent]; empty when that is not a positive span.
    fn certain(&self) -> Option<(Duration, Duration)> {
        let lo = self.commits.first()?.end;
        let hi = self.commits.last()?.start;
        (hi > lo).then_some((lo, hi))
    }
}

fn stretches(commits: &[Commit]) -> Vec<Stretch> {
    let mut by_node: BTreeMap<usize, Vec<Commit>> = BTreeMap::new();
    for c in commits {
        by_node.entry(c.node).or_default().push(*c);
    }
    let mut out = Vec::new();
    for (node, mut cs) in by_node {
        cs.sort_by_key(|c| c.start);
        let mut cur: Vec<Commit> = Vec::new();
        for c in cs {
            if let Some(last) = cur.last() {
                if c.start.saturating_sub(last.end) > SAME_STRETCH {
                    out.push(Stretch {
                        node,
                        commits: std::mem::take(&mut cur),
                    });
                }
            }
            cur.push(c);
        }
        if !cur.is_empty() {
            out.push(Stretch { node, commits: cur });
        }
    }
    out
}

/// The longest time two nodes were both provably writable, `None` when never. Proven means: a
/// commit of one node lies entirely inside the other's certain stretch of writability, or the
/// two certain stretches intersect. Commits whose [sent, acknowledged] windows merely touch
/// around a handover prove nothing (the old primary may have committed before the new one
/// was promoted), so they never count.
pub fn overlap(commits: &[Commit]) -> Option<Duration> {
    let runs = stretches(commits);
    let mut worst: Option<Duration> = None;
    for (i, a) in runs.iter().enumerate() {
        for b in runs.iter().skip(i + 1).filter(|b| b.node != a.node) {
            let mut found: Option<Duration> = None;
            if let (Some((alo, ahi)), Some((blo, bhi))) = (a.certain(), b.certain()) {
                let (lo, hi) = (alo.max(blo), ahi.min(bhi));
                if hi > lo {
                    found = Some(hi - lo);
                }
            }
            for (x, y) in [(a, b), (b, a)] {
                let Some((lo, hi)) = y.certain() else {
                    continue;
                };
                for c in x.commits.iter().filter(|c| c.start >= lo && c.end <= hi) {
                    let d = (c.end - c.start).max(Duration::from_millis(1));
                    found = Some(found.map_or(d, |f| f.max(d)));
                }
            }
            if let Some(d) = found {
                worst = Some(worst.map_or(d, |w| w.max(d)));
            }
        }
    }
    worst
}

/// One drill's result.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub drill: String,
    /// Leader when the fault hit.
    pub target: String,
    pub acknowledged: usize,
    #[serde(serialize_with = "secs")]
    pub write_gap: Duration,
    pub lost: usize,
    /// Up to 10 of the lost ids.
    pub lost_ids: Vec<i64>,
    #[serde(serialize_with = "opt_secs")]
    pub overlap: Option<Duration>,
    /// From the fault to a healthy cluster; `None` when not healthy within the bound.
    #[serde(serialize_with = "opt_secs")]
    pub healthy_after: Option<Duration>,
    pub verdict: Verdict,
    /// Why it is unsafe, or what went wrong running it.
    pub note: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Safe,
    #[serde(rename = "UNSAFE")]
    Unsafe,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

fn opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => secs(d, s),
        None => s.serialize_none(),
    }
}

/// `safe` only when nothing acknowledged is lost, no two nodes were writable at once, the
/// cluster was healthy again within its bound, and the drill ran as planned.
pub fn judge(
    lost: usize,
    overlap: Option<Duration>,
    healthy_after: Option<Duration>,
    error: Option<&str>,
) -> (Verdict, String) {
    let mut why = Vec::new();
    if let Some(e) = error {
        why.push(e.to_string());
    }
    if lost > 0 {
        why.push(format!("{lost} acknowledged rows lost"));
    }
    if let Some(d) = overlap {
        why.push(format!("two writable nodes for {}", fmt_secs(d)));
    }
    if healthy_after.is_none() {
        why.push("not healthy within the bound".into());
    }
    if why.is_empty() {
        (Verdict::Safe, String::new())
    } else {
        (Verdict::Unsafe, why.join("; "))
    }
}

pub fn fmt_secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// The columns the table prints (README's "Drills" section documents them).
pub const COLUMNS: [&str; 9] = [
    "#",
    "Drill",
    "Leader",
    "Acked",
    "Write gap",
    "Lost",
    "Overlap",
    "Healthy after",
    "Verdict",
];

pub fn table(outcomes: &[Outcome]) -> String {
    let mut cols: Vec<(String, Align)> = COLUMNS
        .iter()
        .map(|c| {
            let right = matches!(
                *c,
                "#" | "Acked" | "Write gap" | "Lost" | "Overlap" | "Healthy after"
            );
            (
                c.to_string(),
                if right { Align::Right } else { Align::Left },
            )
        })
        .collect();
    let with_notes = outcomes.iter().any(|o| !o.note.is_empty());
    if with_notes {
        cols.push(("Note".into(), Align::Left));
    }
    let mut t = Table::new(None, cols);
    for (i, o) in outcomes.iter().enumerate() {
        let mut row = vec![
            (i + 1).to_string(),
            o.drill.clone(),
            o.target.clone(),
            o.acknowledged.to_string(),
            fmt_secs(o.write_gap),
            o.lost.to_string(),
            o.overlap.map_or("none".into(), fmt_secs),
            o.healthy_after.map_or("never".into(), fmt_secs),
            match o.verdict {
                Verdict::Safe => "safe".into(),
                Verdict::Unsafe => "UNSAFE".into(),
            },
        ];
        if with_notes {
            row.push(o.note.clone());
        }
        t.add_row(row);
    }
    format!("{}\n", t.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn c(node: usize, start: u64, end: u64) -> Commit {
        Commit {
            node,
            start: ms(start),
            end: ms(end),
        }
    }

    /// Commits every `step` ms on `node` from `from` to `to`, each taking 5 ms.
    fn run(node: usize, from: u64, to: u64, step: u64) -> Vec<Commit> {
        (from..to)
            .step_by(step as usize)
            .map(|t| c(node, t, t + 5))
            .collect()
    }

    #[test]
    fn gap_counts_the_edges() {
        let acks = [ms(100), ms(200), ms(1200), ms(1300)];
        assert_eq!(write_gap(&acks, ms(0), ms(1500)), ms(1000));
        assert_eq!(write_gap(&acks, ms(0), ms(4000)), ms(2700));
        assert_eq!(write_gap(&[], ms(0), ms(500)), ms(500));
        // Acks outside the window do not shorten it.
        assert_eq!(write_gap(&[ms(50)], ms(100), ms(300)), ms(200));
    }

    #[test]
    fn clean_handover_is_no_overlap() {
        let mut all = run(1, 0, 3000, 100);
        all.extend(run(2, 8000, 12000, 100));
        assert_eq!(overlap(&all), None);
        // Windows that touch around the handover prove nothing.
        let mut all = run(1, 0, 3000, 100);
        all.push(c(1, 3000, 3100));
        all.push(c(2, 3050, 3080));
        all.extend(run(2, 3100, 6000, 100));
        assert_eq!(overlap(&all), None);
    }

    #[test]
    fn old_primary_writing_on_is_overlap() {
        let mut all = run(1, 0, 10000, 100);
        all.extend(run(2, 6000, 12000, 100));
        let o = overlap(&all).expect("overlap");
        assert!(o >= ms(3800) && o <= ms(4000), "{o:?}");
        // One lone commit on the old primary inside the new one's stretch is enough.
        let mut all = run(2, 0, 5000, 100);
        all.push(c(1, 2000, 2040));
        assert_eq!(overlap(&all), Some(ms(40)));
    }

    #[test]
    fn a_node_writable_again_later_is_a_new_stretch() {
        // node1 leads, node2 leads, node1 leads again: no overlap.
        let mut all = run(1, 0, 2000, 100);
        all.extend(run(2, 4000, 6000, 100));
        all.extend(run(1, 8000, 9000, 100));
        assert_eq!(overlap(&all), None);
    }

    #[test]
    fn verdicts() {
        assert_eq!(judge(0, None, Some(ms(1)), None).0, Verdict::Safe);
        let (v, why) = judge(3, Some(ms(1500)), None, None);
        assert_eq!(v, Verdict::Unsafe);
        assert!(why.contains("3 acknowledged rows lost"), "{why}");
        assert!(why.contains("1.50s"), "{why}");
        assert!(why.contains("not healthy"), "{why}");
        assert_eq!(judge(0, None, Some(ms(1)), Some("boom")).0, Verdict::Unsafe);
    }

    #[test]
    fn table_has_the_columns() {
        let o = Outcome {
            drill: "agent-freeze".into(),
            target: "node1".into(),
            acknowledged: 10,
            write_gap: ms(2500),
            lost: 0,
            lost_ids: vec![],
            overlap: None,
            healthy_after: Some(ms(30000)),
            verdict: Verdict::Safe,
            note: String::new(),
        };
        let t = table(&[o]);
        for col in COLUMNS {
            assert!(t.contains(col), "{col} missing:\n{t}");
        }
        assert!(t.contains("| agent-freeze |"), "{t}");
        assert!(t.contains("safe"), "{t}");
        assert!(!t.contains("Note"), "{t}");
    }
}

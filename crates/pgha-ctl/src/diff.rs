//! The unified diff `edit-config` shows, line for line as Python's `difflib.unified_diff` writes
//! it (patronictl's output): `--- ` and `+++ ` headers without file names, `@@ -4,7 +4,18 @@`
//! hunks with three lines of context, and the same choice of matching lines as difflib's
//! `SequenceMatcher` (longest matching block first, recursively; no junk heuristics below 200
//! lines, the "popular lines" heuristic above, as difflib).

use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Equal,
    Replace,
    Delete,
    Insert,
}

type Opcode = (Tag, usize, usize, usize, usize);

struct Matcher<'a> {
    a: &'a [&'a str],
    b: &'a [&'a str],
    b2j: HashMap<&'a str, Vec<usize>>,
}

impl<'a> Matcher<'a> {
    fn new(a: &'a [&'a str], b: &'a [&'a str]) -> Matcher<'a> {
        let mut b2j: HashMap<&str, Vec<usize>> = HashMap::new();
        for (j, line) in b.iter().enumerate() {
            b2j.entry(*line).or_default().push(j);
        }
        // difflib's autojunk: in long sequences, lines that occur in more than 1% are ignored
        // when looking for matches.
        let n = b.len();
        if n >= 200 {
            let ntest = n / 100 + 1;
            b2j.retain(|_, idxs| idxs.len() <= ntest);
        }
        Matcher { a, b, b2j }
    }

    fn longest_match(
        &self,
        alo: usize,
        ahi: usize,
        blo: usize,
        bhi: usize,
    ) -> (usize, usize, usize) {
        let (mut besti, mut bestj, mut bestsize) = (alo, blo, 0);
        let mut j2len: HashMap<usize, usize> = HashMap::new();
        for i in alo..ahi {
            let mut newj2len = HashMap::new();
            if let Some(js) = self.b2j.get(self.a[i]) {
                for &j in js {
                    if j < blo {
                        continue;
                    }
                    if j >= bhi {
                        break;
                    }
                    let k = j
                        .checked_sub(1)
                        .and_then(|p| j2len.get(&p))
                        .copied()
                        .unwrap_or(0)
                        + 1;
                    newj2len.insert(j, k);
                    if k > bestsize {
                        (besti, bestj, bestsize) = (i + 1 - k, j + 1 - k, k);
                    }
                }
            }
            j2len = newj2len;
        }
        // Extend over equal lines the index left out (the popular ones).
        while besti > alo && bestj > blo && self.a[besti - 1] == self.b[bestj - 1] {
            besti -= 1;
            bestj -= 1;
            bestsize += 1;
        }
        while besti + bestsize < ahi
            && bestj + bestsize < bhi
            && self.a[besti + bestsize] == self.b[bestj + bestsize]
        {
            bestsize += 1;
        }
        (besti, bestj, bestsize)
    }

    fn matching_blocks(&self) -> Vec<(usize, usize, usize)> {
        let (la, lb) = (self.a.len(), self.b.len());
        let mut queue = vec![(0, la, 0, lb)];
        let mut blocks = Vec::new();
        while let Some((alo, ahi, blo, bhi)) = queue.pop() {
            let (i, j, k) = self.longest_match(alo, ahi, blo, bhi);
            if k > 0 {
                blocks.push((i, j, k));
                if alo < i && blo < j {
                    queue.push((alo, i, blo, j));
                }
                if i + k < ahi && j + k < bhi {
                    queue.push((i + k, ahi, j + k, bhi));
                }
            }
        }
        blocks.sort_unstable();
        let mut collapsed: Vec<(usize, usize, usize)> = Vec::new();
        for (i, j, k) in blocks {
            match collapsed.last_mut() {
                Some(last) if last.0 + last.2 == i && last.1 + last.2 == j => last.2 += k,
                _ => collapsed.push((i, j, k)),
            }
        }
        collapsed.push((la, lb, 0));
        collapsed
    }

    fn opcodes(&self) -> Vec<Opcode> {
        let (mut i, mut j) = (0, 0);
        let mut codes = Vec::new();
        for (ai, bj, size) in self.matching_blocks() {
            let tag = if i < ai && j < bj {
                Some(Tag::Replace)
            } else if i < ai {
                Some(Tag::Delete)
            } else if j < bj {
                Some(Tag::Insert)
            } else {
                None
            };
            if let Some(tag) = tag {
                codes.push((tag, i, ai, j, bj));
            }
            (i, j) = (ai + size, bj + size);
            if size > 0 {
                codes.push((Tag::Equal, ai, i, bj, j));
            }
        }
        codes
    }

    fn grouped_opcodes(&self, n: usize) -> Vec<Vec<Opcode>> {
        let mut codes = self.opcodes();
        if codes.is_empty() {
            codes.push((Tag::Equal, 0, 1, 0, 1));
        }
        if let Some(first) = codes.first_mut() {
            if first.0 == Tag::Equal {
                let (t, i1, i2, j1, j2) = *first;
                *first = (
                    t,
                    i1.max(i2.saturating_sub(n)),
                    i2,
                    j1.max(j2.saturating_sub(n)),
                    j2,
                );
            }
        }
        if let Some(last) = codes.last_mut() {
            if last.0 == Tag::Equal {
                let (t, i1, i2, j1, j2) = *last;
                *last = (t, i1, i2.min(i1 + n), j1, j2.min(j1 + n));
            }
        }
        let mut groups = Vec::new();
        let mut group = Vec::new();
        for (tag, mut i1, i2, mut j1, j2) in codes {
            if tag == Tag::Equal && i2 - i1 > 2 * n {
                group.push((tag, i1, i2.min(i1 + n), j1, j2.min(j1 + n)));
                groups.push(std::mem::take(&mut group));
                i1 = i1.max(i2.saturating_sub(n));
                j1 = j1.max(j2.saturating_sub(n));
            }
            group.push((tag, i1, i2, j1, j2));
        }
        if !(group.is_empty() || group.len() == 1 && group[0].0 == Tag::Equal) {
            groups.push(group);
        }
        groups
    }
}

/// difflib's `_format_range_unified`.
fn range(start: usize, stop: usize) -> String {
    let mut beginning = start + 1;
    let length = stop - start;
    if length == 1 {
        return beginning.to_string();
    }
    if length == 0 {
        beginning -= 1;
    }
    format!("{beginning},{length}")
}

/// patronictl's `listify`: the text's lines, a trailing newline ignored.
fn lines(text: &str) -> Vec<&str> {
    text.trim_end_matches('\n').split('\n').collect()
}

/// The diff of `before` and `after` as patronictl prints it to a non-terminal: one string per
/// output line, none when the texts are equal line for line.
pub fn unified_diff(before: &str, after: &str) -> Vec<String> {
    let (a, b) = (lines(before), lines(after));
    let m = Matcher::new(&a, &b);
    let mut out = Vec::new();
    for group in m.grouped_opcodes(3) {
        if out.is_empty() {
            out.push("--- ".to_string());
            out.push("+++ ".to_string());
        }
        let (first, last) = (group[0], group[group.len() - 1]);
        out.push(format!(
            "@@ -{} +{} @@",
            range(first.1, last.2),
            range(first.3, last.4)
        ));
        for (tag, i1, i2, j1, j2) in group {
            if tag == Tag::Equal {
                out.extend(a[i1..i2].iter().map(|l| format!(" {l}")));
                continue;
            }
            if matches!(tag, Tag::Replace | Tag::Delete) {
                out.extend(a[i1..i2].iter().map(|l| format!("-{l}")));
            }
            if matches!(tag, Tag::Replace | Tag::Insert) {
                out.extend(b[j1..j2].iter().map(|l| format!("+{l}")));
            }
        }
    }
    out
}

/// The diff with ANSI colors, for a terminal: headers yellow, hunk headers cyan, removed lines
/// red, added lines green.
pub fn colorize(lines: &[String]) -> String {
    let mut out = String::new();
    for l in lines {
        let color = if l.starts_with("--- ") || l.starts_with("+++ ") {
            Some("33")
        } else if l.starts_with("@@") {
            Some("36")
        } else if l.starts_with('-') {
            Some("31")
        } else if l.starts_with('+') {
            Some("32")
        } else {
            None
        };
        match color {
            Some(c) => out.push_str(&format!("\x1b[{c}m{l}\x1b[0m\n")),
            None => out.push_str(&format!("{l}\n")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_edit_config_diff() {
        let before = "initdb:\n- encoding: UTF8\n- data-checksums\nloop_wait: 10\n\
                      maximum_lag_on_failover: 1048576\npostgresql:\n  parameters: null\n  pg_hba:\n\
                      \x20 - host replication replicator 127.0.0.1/32 md5\n\
                      \x20 - host replication replicator 192.168.2.0/24 md5\n\
                      \x20 - host all all 0.0.0.0/0 md5\n  use_pg_rewind: true\nretry_timeout: 10\nttl: 30\n";
        let after = before.replace(
            "  parameters: null\n",
            "  parameters:\n    shared_buffers: 1GB\n    work_mem: 8MB\n",
        );
        assert_eq!(
            unified_diff(before, &after).join("\n"),
            "--- \n+++ \n@@ -4,7 +4,9 @@\n loop_wait: 10\n maximum_lag_on_failover: 1048576\n \
             postgresql:\n-  parameters: null\n+  parameters:\n+    shared_buffers: 1GB\n+    work_mem: 8MB\n   pg_hba:\n\
             \x20  - host replication replicator 127.0.0.1/32 md5\n   - host replication replicator 192.168.2.0/24 md5"
        );
    }

    #[test]
    fn separate_hunks_and_edges() {
        let before = "loop_wait: 10\nmaximum_lag_on_failover: 1048576\npostgresql:\n  pg_hba:\n  - a\n  - b\n  use_pg_rewind: true\nretry_timeout: 10\nttl: 30\n";
        let after = before
            .replace("loop_wait: 10", "loop_wait: 15")
            .replace("ttl: 30", "ttl: 45");
        assert_eq!(
            unified_diff(before, &after),
            [
                "--- ",
                "+++ ",
                "@@ -1,4 +1,4 @@",
                "-loop_wait: 10",
                "+loop_wait: 15",
                " maximum_lag_on_failover: 1048576",
                " postgresql:",
                "   pg_hba:",
                "@@ -6,4 +6,4 @@",
                "   - b",
                "   use_pg_rewind: true",
                " retry_timeout: 10",
                "-ttl: 30",
                "+ttl: 45",
            ]
        );
        assert!(unified_diff("a: 1\n", "a: 1").is_empty());
        assert_eq!(
            unified_diff("", "a: 1\n"),
            ["--- ", "+++ ", "@@ -1 +1 @@", "-", "+a: 1"]
        );
        assert_eq!(
            unified_diff("a\nb\n", "a\n"),
            ["--- ", "+++ ", "@@ -1,2 +1 @@", " a", "-b"]
        );
        assert_eq!(range(3, 3), "3,0");
        assert!(colorize(&["+x".into()]).contains("\x1b[32m+x"));
    }
}

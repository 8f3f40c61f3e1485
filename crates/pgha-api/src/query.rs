//! Query strings parsed as Python's `urllib.parse.parse_qs` does with its defaults: `&`-separated
//! `key=value` pairs, `+` and `%XX` decoded, pairs without `=` or with an empty value dropped,
//! and the first value of a repeated key wins when read through [`Query::get`].

#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub(crate) fn parse(raw: Option<&str>) -> Query {
        let mut pairs = Vec::new();
        for part in raw.unwrap_or("").split('&') {
            let Some((k, v)) = part.split_once('=') else {
                continue;
            };
            if v.is_empty() {
                continue;
            }
            pairs.push((decode(k), decode(v)));
        }
        Query { pairs }
    }

    /// The first value given for `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Distinct keys in first-seen order, each with its first value.
    pub(crate) fn first_values(&self) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = Vec::new();
        for (k, v) in &self.pairs {
            if !out.iter().any(|(seen, _)| seen == k) {
                out.push((k.as_str(), v.as_str()));
            }
        }
        out
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (
                bytes.get(i + 1).and_then(hex),
                bytes.get(i + 2).and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: &u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_parse_qs() {
        let q = Query::parse(Some(
            "lag=1MB&tag_x=a%20b&tag_x=second&empty=&flag&tag_y=c+d&bad=%zz",
        ));
        assert_eq!(q.get("lag"), Some("1MB"));
        assert_eq!(q.get("tag_x"), Some("a b"));
        assert_eq!(q.get("empty"), None);
        assert_eq!(q.get("flag"), None);
        assert_eq!(q.get("tag_y"), Some("c d"));
        assert_eq!(q.get("bad"), Some("%zz"));
        assert_eq!(
            q.first_values(),
            vec![
                ("lag", "1MB"),
                ("tag_x", "a b"),
                ("tag_y", "c d"),
                ("bad", "%zz")
            ]
        );
        assert_eq!(Query::parse(None), Query::default());
        assert_eq!(Query::parse(Some("%")).get("%"), None);
        assert_eq!(Query::parse(Some("a=%f0%9f")).get("a"), Some("\u{fffd}"));
    }
}

use std::sync::atomic::{AtomicU32, Ordering};

use tracing::{error, info, warn};

use super::*;

/// A fresh empty directory under the system temp dir (removed by the caller's `Cleanup`).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pgha-logging-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create a temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Collects what the subscriber writes.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buf {
    type Writer = Buf;
    fn make_writer(&'a self) -> Buf {
        self.clone()
    }
}

fn capture(json: bool, dedupe: bool, emit: impl FnOnce()) -> String {
    let buf = Buf::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("debug"))
        .with_writer(buf.clone())
        .event_format(PatroniFormat {
            json,
            dedupe: Dedupe::new(dedupe),
        })
        .finish();
    tracing::subscriber::with_default(subscriber, emit);
    let bytes = buf.0.lock().unwrap().clone();
    String::from_utf8(bytes).expect("UTF-8 log")
}

fn emit_sample() {
    info!("no action. I am (node1), the leader with the lock");
    warn!(member = "node2", lag = 17_u64, "replica is lagging");
    error!(
        critical = true,
        "Can't start; there is already a node named 'node1' running"
    );
    error!("quote \" backslash \\ newline\nend");
}

#[test]
fn text_lines_have_the_level_at_column_25() {
    let out = capture(false, false, emit_sample);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    for (line, level) in lines.iter().zip(["INFO", "WARNING", "CRITICAL", "ERROR"]) {
        assert_eq!(&line[23..24], " ", "{line}");
        assert!(line[24..].starts_with(&format!("{level}: ")), "{line}");
        assert!(
            chrono::NaiveDateTime::parse_from_str(&line[..23], "%Y-%m-%d %H:%M:%S,%3f").is_ok(),
            "{line}"
        );
    }
    assert!(lines[1].ends_with("WARNING: replica is lagging member=node2 lag=17"));
}

#[test]
fn json_lines_parse_with_time_level_and_message() {
    let out = capture(true, false, emit_sample);
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 4, "{out}");
    let levels: Vec<&str> = lines.iter().map(|l| l["level"].as_str().unwrap()).collect();
    assert_eq!(levels, ["INFO", "WARNING", "CRITICAL", "ERROR"]);
    for l in &lines {
        let time = l["time"].as_str().expect("time");
        assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
        let keys: Vec<&String> = l.as_object().unwrap().keys().take(3).collect();
        assert_eq!(keys, ["time", "level", "message"]);
    }
    assert_eq!(
        lines[0]["message"],
        "no action. I am (node1), the leader with the lock"
    );
    assert_eq!(lines[1]["member"], "node2");
    assert_eq!(lines[1]["lag"], 17);
    assert_eq!(lines[3]["message"], "quote \" backslash \\ newline\nend");
}

#[test]
fn heartbeat_lines_are_deduplicated_when_asked() {
    let beats = || {
        for _ in 0..3 {
            info!("no action. I am (node1), a secondary, and following a leader (node3)");
        }
        info!("received switchover request");
        info!("no action. I am (node1), a secondary, and following a leader (node3)");
        info!("no action. I am (node1), the leader with the lock");
        info!("no action. I am (node1), the leader with the lock");
        info!("no action. I am (node1), a secondary, and following a leader (node3)");
    };
    let out = capture(false, true, beats);
    let messages: Vec<&str> = out.lines().map(|l| &l[30..]).collect();
    assert_eq!(
        messages,
        [
            "no action. I am (node1), a secondary, and following a leader (node3)",
            "received switchover request",
            "no action. I am (node1), the leader with the lock",
            "no action. I am (node1), a secondary, and following a leader (node3)",
        ]
    );
    assert_eq!(capture(false, false, beats).lines().count(), 8);
    assert_eq!(capture(true, true, beats).lines().count(), 4);
}

#[test]
fn dedupe_off_admits_everything() {
    let d = Dedupe::new(false);
    assert!(d.admit("no action. x") && d.admit("no action. x"));
    let d = Dedupe::new(true);
    assert!(d.admit("no action. x"));
    assert!(!d.admit("no action. x"));
    assert!(d.admit("other") && d.admit("other"));
    assert!(!d.admit("no action. x"));
    assert!(d.admit("no action. y"));
}

fn lines_of(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn rotates_by_size_like_python() {
    let dir = TempDir::new("rotate");
    let path = dir.0.join(LOG_FILE);
    let mut f = RotatingFile::open(&path, 100, 2).unwrap();
    for i in 0..12 {
        // 25 bytes a line: three lines fit below 100 bytes, the fourth rotates.
        f.write_all(format!("line {i:02} ................\n").as_bytes())
            .unwrap();
    }
    f.flush().unwrap();
    let current = lines_of(&path);
    let one = lines_of(&dir.0.join("pgha.log.1"));
    let two = lines_of(&dir.0.join("pgha.log.2"));
    assert!(
        !dir.0.join("pgha.log.3").exists(),
        "file_num old files at most"
    );
    assert_eq!(current.len(), 3);
    assert!(current[0].starts_with("line 09") && current[2].starts_with("line 11"));
    assert!(one[0].starts_with("line 06"), "{one:?}");
    assert!(two[0].starts_with("line 03"), "{two:?}");
    for p in [
        path.clone(),
        dir.0.join("pgha.log.1"),
        dir.0.join("pgha.log.2"),
    ] {
        assert!(fs::metadata(&p).unwrap().len() < 100, "{}", p.display());
    }
    // Reopening continues the current file and its size.
    drop(f);
    let mut f = RotatingFile::open(&path, 100, 2).unwrap();
    f.write_all(b"line 12 ................\n").unwrap();
    assert_eq!(lines_of(&path).len(), 1, "75 + 25 bytes reach the limit");
}

#[test]
fn no_rotation_without_backups_or_size_and_long_lines_survive() {
    let dir = TempDir::new("norotate");
    let path = dir.0.join(LOG_FILE);
    let mut f = RotatingFile::open(&path, 10, 0).unwrap();
    for _ in 0..5 {
        f.write_all(b"0123456789abcdef\n").unwrap();
    }
    assert_eq!(lines_of(&path).len(), 5);
    assert!(!dir.0.join("pgha.log.1").exists());
    let path2 = dir.0.join("other.log");
    let mut f = RotatingFile::open(&path2, 5, 3).unwrap();
    f.write_all(b"a line longer than the limit\n").unwrap();
    f.write_all(b"another one\n").unwrap();
    assert_eq!(lines_of(&path2), ["another one"]);
    assert_eq!(
        lines_of(&dir.0.join("other.log.1")),
        ["a line longer than the limit"]
    );
}

#[test]
fn unusable_directories_are_reported_not_panicked() {
    let dir = TempDir::new("bad");
    let not_a_dir = dir.0.join("file");
    fs::write(&not_a_dir, "x").unwrap();
    let settings = LogSettings {
        dir: Some(not_a_dir.join("logs")),
        ..LogSettings::from_config(&pgha_config::Log::default())
    };
    let Err(e) = settings.writer() else {
        panic!("a directory under a file cannot be used")
    };
    let msg = e.to_string();
    assert!(msg.starts_with("cannot write logs to "), "{msg}");
    assert!(msg.contains("file/logs/pgha.log"), "{msg}");
}

#[test]
fn settings_from_the_log_section() {
    let mut log = pgha_config::Log {
        r#type: "json".into(),
        dir: Some(PathBuf::from("/var/log/pgha")),
        file_num: Some(7),
        ..Default::default()
    };
    log.extra
        .insert("deduplicate_heartbeat_logs".into(), Value::Bool(true));
    let s = LogSettings::from_config(&log);
    assert!(s.json && s.dedupe_heartbeat);
    assert_eq!((s.file_num, s.file_size), (7, DEFAULT_FILE_SIZE));
    assert_eq!(s.dir.as_deref(), Some(Path::new("/var/log/pgha")));
    let d = LogSettings::from_config(&pgha_config::Log::default());
    assert!(!d.json && !d.dedupe_heartbeat && d.dir.is_none());
    assert_eq!(d.file_num, DEFAULT_FILE_NUM);
    assert!(d.filter().starts_with("info,"));
    let warning = LogSettings {
        level: "warning".into(),
        ..d
    };
    assert!(warning.filter().starts_with("warn,"));
}

//! The operator's terminal: output, and prompts read line by line from standard input, rendered
//! exactly as patronictl's `click.prompt` / `click.confirm` render them:
//!
//! - `Primary [pg-db1]: ` (a default in brackets; an empty answer takes it),
//! - `Please confirm the cluster name to remove: ` (no default; an empty answer asks again),
//! - `Are you sure you want to ...? [y/N]: ` (`y`/`yes`/`n`/`no`, empty = no; anything else
//!   prints `Error: invalid input` and asks again).
//!
//! The prompt goes to stdout without a newline and the answer is not echoed (as with click when
//! stdin is a pipe). End of input aborts the command: `Aborted!` on stderr, exit code 1.

#[cfg(test)]
use std::collections::VecDeque;
use std::io::{BufRead, IsTerminal, Write};

/// Where a command writes and reads. [`StdTerm`] is the process's stdio; tests script answers.
pub trait Term {
    /// Writes `text` to stdout as is.
    fn print(&mut self, text: &str);
    /// One line of stdin without its line end; `None` at end of input.
    fn read_line(&mut self) -> Option<String>;
    /// Like [`Term::read_line`], without echoing what is typed on a terminal.
    fn read_secret(&mut self) -> Option<String> {
        self.read_line()
    }
    /// Whether stdout is a terminal (colors and a pager for diffs).
    fn is_tty(&self) -> bool {
        false
    }
}

/// The operator answered a prompt with end of input (or Ctrl-D): click's `Abort`.
#[derive(Debug)]
pub struct Aborted;

impl std::fmt::Display for Aborted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Aborted!")
    }
}

impl std::error::Error for Aborted {}

/// The command failed and already said why: exit code 1, nothing more printed.
#[derive(Debug)]
pub struct AlreadyReported;

impl std::fmt::Display for AlreadyReported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the command failed")
    }
}

impl std::error::Error for AlreadyReported {}

/// Writes `text` and a newline (`click.echo`).
pub fn echo(term: &mut dyn Term, text: &str) {
    term.print(text);
    term.print("\n");
}

/// `click.prompt(text, default=default)`: the answer, or the default for an empty answer.
pub fn prompt(term: &mut dyn Term, text: &str, default: Option<&str>) -> Result<String, Aborted> {
    let shown = match default {
        Some(d) => format!("{text} [{d}]: "),
        None => format!("{text}: "),
    };
    loop {
        term.print(&shown);
        let answer = term.read_line().ok_or(Aborted)?;
        if !answer.is_empty() {
            return Ok(answer);
        }
        if let Some(d) = default {
            return Ok(d.to_string());
        }
    }
}

/// `click.prompt(text, hide_input=True)`: `Password: `, read without echo on a terminal.
pub fn prompt_secret(term: &mut dyn Term, text: &str) -> Result<String, Aborted> {
    loop {
        term.print(&format!("{text}: "));
        let answer = term.read_secret().ok_or(Aborted)?;
        if !answer.is_empty() {
            return Ok(answer);
        }
    }
}

/// `click.confirm(text)`: `text [y/N]: `; only `y`/`yes` (any case) confirm.
pub fn confirm(term: &mut dyn Term, text: &str) -> Result<bool, Aborted> {
    loop {
        term.print(&format!("{text} [y/N]: "));
        let answer = term.read_line().ok_or(Aborted)?;
        match answer.trim().to_lowercase().as_str() {
            "y" | "yes" => return Ok(true),
            "n" | "no" | "" => return Ok(false),
            _ => echo(term, "Error: invalid input"),
        }
    }
}

/// The process's stdout and stdin.
pub struct StdTerm;

impl Term for StdTerm {
    fn print(&mut self, text: &str) {
        let mut out = std::io::stdout().lock();
        if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
            // `pghactl ... | head -1`: the reader is gone, nothing more to say.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }

    fn read_line(&mut self) -> Option<String> {
        let mut line = String::new();
        match std::io::stdin().lock().read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end_matches(['\n', '\r']).to_string()),
        }
    }

    fn read_secret(&mut self) -> Option<String> {
        let tty = std::io::stdin().is_terminal();
        let stty = |arg: &str| {
            let _ = std::process::Command::new("stty")
                .arg(arg)
                .stdin(std::process::Stdio::inherit())
                .status();
        };
        if tty {
            stty("-echo");
        }
        let line = self.read_line();
        if tty {
            stty("echo");
            self.print("\n");
        }
        line
    }

    fn is_tty(&self) -> bool {
        std::io::stdout().is_terminal()
    }
}

/// A terminal with scripted answers that records everything printed (tests).
#[cfg(test)]
#[derive(Debug, Default)]
pub struct ScriptedTerm {
    pub answers: VecDeque<String>,
    pub output: String,
    pub tty: bool,
}

#[cfg(test)]
impl ScriptedTerm {
    pub fn new(answers: &[&str]) -> ScriptedTerm {
        ScriptedTerm {
            answers: answers.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
impl Term for ScriptedTerm {
    fn print(&mut self, text: &str) {
        self.output.push_str(text);
    }

    fn read_line(&mut self) -> Option<String> {
        self.answers.pop_front()
    }

    fn is_tty(&self) -> bool {
        self.tty
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_with_default_renders_like_click() {
        let mut t = ScriptedTerm::new(&["", "pg-db2"]);
        assert_eq!(prompt(&mut t, "Primary", Some("pg-db1")).unwrap(), "pg-db1");
        assert_eq!(
            prompt(&mut t, "Candidate ['pg-db2']", Some("")).unwrap(),
            "pg-db2"
        );
        assert_eq!(t.output, "Primary [pg-db1]: Candidate ['pg-db2'] []: ");
    }

    #[test]
    fn prompt_without_default_asks_again_on_empty_answer() {
        let mut t = ScriptedTerm::new(&["", "batman"]);
        assert_eq!(
            prompt(&mut t, "Please confirm the cluster name to remove", None).unwrap(),
            "batman"
        );
        assert_eq!(
            t.output,
            "Please confirm the cluster name to remove: Please confirm the cluster name to remove: "
        );
        assert!(prompt(&mut t, "x", None).is_err(), "end of input aborts");
    }

    #[test]
    fn confirm_accepts_click_answers() {
        let mut t = ScriptedTerm::new(&["Y", "yes", "", "no", "maybe", "y"]);
        let q = "Are you sure you want to restart members pg-db2?";
        assert!(confirm(&mut t, q).unwrap());
        assert!(confirm(&mut t, q).unwrap());
        assert!(!confirm(&mut t, q).unwrap());
        assert!(!confirm(&mut t, q).unwrap());
        t.output.clear();
        assert!(confirm(&mut t, q).unwrap());
        assert_eq!(
            t.output,
            format!("{q} [y/N]: Error: invalid input\n{q} [y/N]: ")
        );
        assert!(confirm(&mut t, q).is_err());
    }
}

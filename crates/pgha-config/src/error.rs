use std::fmt;
use std::path::PathBuf;

/// One thing wrong with the configuration, named by its dotted key path
/// (`postgresql.data_dir`, `restapi.listen`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or directory could not be read.
    #[error("cannot read configuration {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid YAML, or its top level is not a mapping. `path` is the file, or
    /// `$PATRONI_CONFIGURATION` / `<string>` when the YAML did not come from a file.
    #[error("cannot parse configuration {}: {message}", path.display())]
    Yaml { path: PathBuf, message: String },
    /// A configuration directory holds no `*.yml` / `*.yaml` file.
    #[error("configuration directory {} contains no *.yml or *.yaml file; put the configuration there or pass a file", path.display())]
    EmptyDirectory { path: PathBuf },
    /// The YAML parsed, but the values are unusable. Every problem found is listed.
    #[error("{}", format_problems(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The validation problems, empty for IO and YAML errors.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid(p) => p,
            _ => &[],
        }
    }
}

fn format_problems(problems: &[Problem]) -> String {
    let mut out = format!(
        "invalid configuration ({} problem{}):",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        out.push_str("\n  ");
        out.push_str(&p.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display() {
        let p = Problem::new("postgresql.data_dir", "is required");
        assert_eq!(p.to_string(), "postgresql.data_dir: is required");
        let e = ConfigError::Invalid(vec![p.clone(), Problem::new("name", "is required")]);
        assert_eq!(
            e.to_string(),
            "invalid configuration (2 problems):\n  postgresql.data_dir: is required\n  name: is required"
        );
        assert_eq!(e.problems().len(), 2);
    }
}

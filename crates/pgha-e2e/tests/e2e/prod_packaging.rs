//! Packaging: the systemd unit passes `systemd-analyze verify` (where systemd's tools exist),
//! and `pgha --generate-sample-config FILE` writes a file `pgha --validate-config` accepts. No
//! cluster is started.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use pgha_e2e::locate_binaries;
use pgha_e2e::proc::run_with_timeout;
use pgha_e2e::report;

use crate::common::{skip, stdout_ok};

fn packaging_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging")
}

/// A private scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Result<Scratch> {
        let p = std::env::temp_dir().join(format!("pgha-e2e-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p)?;
        Ok(Scratch(p))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() -> Result<()> {
    if skip("systemd_unit_passes_systemd_analyze_verify") {
        return Ok(());
    }
    let unit = packaging_dir().join("pgha.service");
    let text =
        std::fs::read_to_string(&unit).with_context(|| format!("read {}", unit.display()))?;
    for line in [
        "User=postgres",
        "ExecStart=/usr/local/bin/pgha /etc/pgha/pgha.yml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "KillMode=process",
        "TimeoutStopSec=90",
        "LimitNOFILE=",
    ] {
        ensure!(
            text.lines().any(|l| l.starts_with(line)),
            "pgha.service lacks {line}"
        );
    }
    let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .find(|p| Path::new(p).is_file());
    let Some(analyze) = analyze else {
        report("systemd unit: systemd-analyze not installed here; `verify` skipped");
        return Ok(());
    };
    // `verify` insists that ExecStart's program exists: point it at the built binary.
    let bin = locate_binaries()?.join("pgha");
    let bin = bin.canonicalize().unwrap_or(bin);
    let scratch = Scratch::new("unit")?;
    let copy = scratch.0.join("pgha.service");
    std::fs::write(
        &copy,
        text.replace("/usr/local/bin/pgha", &bin.display().to_string()),
    )?;
    let out = run_with_timeout(
        Command::new(analyze).arg("verify").arg(&copy),
        None,
        Duration::from_secs(60),
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let about_unit: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("pgha.service"))
        .collect();
    ensure!(
        out.status.success() && about_unit.is_empty(),
        "systemd-analyze verify ({}): {stderr}",
        out.status
    );
    report("systemd unit: packaging/pgha.service passes systemd-analyze verify");
    Ok(())
}

#[test]
fn generated_sample_config_validates() -> Result<()> {
    if skip("generated_sample_config_validates") {
        return Ok(());
    }
    let pgha = locate_binaries()?.join("pgha");
    let scratch = Scratch::new("sample")?;
    let file = scratch.0.join("pgha.yml");
    let file_s = file.display().to_string();
    let out = run_with_timeout(
        Command::new(&pgha).args(["--generate-sample-config", &file_s]),
        None,
        Duration::from_secs(30),
    )?;
    stdout_ok(&out, "pgha --generate-sample-config FILE")?;
    let out = run_with_timeout(
        Command::new(&pgha).args(["--validate-config", &file_s]),
        None,
        Duration::from_secs(30),
    )?;
    let said = stdout_ok(&out, "pgha --validate-config")?;
    ensure!(said.contains("configuration is valid"), "{said}");
    // Printed to stdout, it is the same text.
    let out = run_with_timeout(
        Command::new(&pgha).arg("--generate-sample-config"),
        None,
        Duration::from_secs(30),
    )?;
    let printed = stdout_ok(&out, "pgha --generate-sample-config")?;
    ensure!(printed == std::fs::read_to_string(&file)?, "stdout differs");
    // Never overwrites.
    let out = run_with_timeout(
        Command::new(&pgha).args(["--generate-sample-config", &file_s]),
        None,
        Duration::from_secs(30),
    )?;
    ensure!(!out.status.success(), "overwrote an existing file");
    Ok(())
}

//! The watchdog: a device that resets the machine unless it hears from the agent in time.
//! While this node leads, every HA cycle that renews the leader lock also resets the
//! watchdog, and its timeout (`ttl - safety_margin`) is shorter than the lock's ttl. An agent
//! that stops looping (hung, SIGSTOPped, starved) while its postgres still runs as primary
//! thus gets the machine reset before the lock expires and a replica is promoted: there are
//! never two primaries.
//!
//! [`Device`] is the hardware seam: the Linux driver ([`LinuxDevice`], ioctls) and Patroni's
//! testing driver ([`TestingDevice`], plain writes to a FIFO the test reads). [`Watchdog`] is
//! the policy around it: when to open, what timeout, what counts as safe, what to log.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use pgha_config::{WatchdogDriver, WatchdogMode};
use pgha_core::WatchdogView;
use tracing::{debug, error, info, warn};

#[derive(Debug, thiserror::Error)]
pub enum WatchdogError {
    #[error("watchdog.device {} cannot be opened: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not {what} on {device}: {source}")]
    Io {
        what: &'static str,
        device: String,
        source: std::io::Error,
    },
    #[error("{device} is not open")]
    Closed { device: String },
}

/// What the agent needs from a watchdog device.
pub trait Device: Send {
    fn open(&mut self) -> Result<(), WatchdogError>;
    fn is_open(&self) -> bool;
    /// The device takes a timeout (else it keeps its own, which may be unsafe).
    fn can_set_timeout(&mut self) -> bool;
    /// Closing it with the magic character stops it (else it fires after every close).
    fn can_be_disabled(&mut self) -> bool;
    fn set_timeout(&mut self, seconds: i32) -> Result<(), WatchdogError>;
    /// The timeout in effect, in seconds.
    fn timeout(&mut self) -> Result<i32, WatchdogError>;
    fn keepalive(&mut self) -> Result<(), WatchdogError>;
    /// Magic close: `V`, then close, so the device stops instead of firing.
    fn close(&mut self) -> Result<(), WatchdogError>;
    /// For log lines: "Linux watchdog device at /dev/watchdog1 (softdog)".
    fn describe(&self) -> String;
}

/// Opens for writing without blocking: a FIFO nobody reads fails at once (ENXIO) instead of
/// hanging the HA loop.
fn open_for_writing(path: &Path, append: bool) -> Result<File, WatchdogError> {
    OpenOptions::new()
        .write(true)
        .append(append)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|source| WatchdogError::Open {
            path: path.to_path_buf(),
            source,
        })
}

fn write_to(
    file: Option<&mut File>,
    bytes: &[u8],
    what: &'static str,
    device: String,
) -> Result<(), WatchdogError> {
    let Some(f) = file else {
        return Err(WatchdogError::Closed { device });
    };
    f.write_all(bytes).map_err(|source| WatchdogError::Io {
        what,
        device,
        source,
    })
}

/// `struct watchdog_info` of linux/watchdog.h.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WatchdogInfo {
    options: u32,
    firmware_version: u32,
    identity: [u8; 32],
}

const WDIOF_SETTIMEOUT: u32 = 0x0080;
const WDIOF_MAGICCLOSE: u32 = 0x0100;

mod ioctl {
    use super::WatchdogInfo;
    nix::ioctl_read!(get_support, b'W', 0, WatchdogInfo);
    nix::ioctl_read!(keepalive, b'W', 5, nix::libc::c_int);
    nix::ioctl_readwrite!(set_timeout, b'W', 6, nix::libc::c_int);
    nix::ioctl_read!(get_timeout, b'W', 7, nix::libc::c_int);
}

/// A Linux watchdog device (`/dev/watchdog`, softdog or hardware).
pub struct LinuxDevice {
    path: PathBuf,
    file: Option<File>,
    support: Option<WatchdogInfo>,
}

impl LinuxDevice {
    pub fn new(path: PathBuf) -> LinuxDevice {
        LinuxDevice {
            path,
            file: None,
            support: None,
        }
    }

    fn fd(&self) -> Result<std::os::fd::RawFd, WatchdogError> {
        self.file
            .as_ref()
            .map(AsRawFd::as_raw_fd)
            .ok_or_else(|| WatchdogError::Closed {
                device: self.describe(),
            })
    }

    fn io(&self, what: &'static str, e: nix::errno::Errno) -> WatchdogError {
        WatchdogError::Io {
            what,
            device: self.describe(),
            source: std::io::Error::from(e),
        }
    }

    fn support(&mut self) -> Option<WatchdogInfo> {
        if self.support.is_none() {
            let fd = self.fd().ok()?;
            let mut info = WatchdogInfo {
                options: 0,
                firmware_version: 0,
                identity: [0; 32],
            };
            // SAFETY: fd is open for as long as self.file; info is a valid watchdog_info.
            match unsafe { ioctl::get_support(fd, &mut info) } {
                Ok(_) => self.support = Some(info),
                Err(e) => debug!("WDIOC_GETSUPPORT failed on {}: {e}", self.path.display()),
            }
        }
        self.support
    }
}

impl Device for LinuxDevice {
    fn open(&mut self) -> Result<(), WatchdogError> {
        self.file = Some(open_for_writing(&self.path, false)?);
        self.support = None;
        Ok(())
    }

    fn is_open(&self) -> bool {
        self.file.is_some()
    }

    fn can_set_timeout(&mut self) -> bool {
        self.support()
            .is_some_and(|s| s.options & WDIOF_SETTIMEOUT != 0)
    }

    fn can_be_disabled(&mut self) -> bool {
        self.support()
            .is_some_and(|s| s.options & WDIOF_MAGICCLOSE != 0)
    }

    fn set_timeout(&mut self, seconds: i32) -> Result<(), WatchdogError> {
        let fd = self.fd()?;
        let mut t = seconds;
        // SAFETY: fd is open; t is a c_int the kernel reads and writes back.
        unsafe { ioctl::set_timeout(fd, &mut t) }.map_err(|e| self.io("set the timeout", e))?;
        Ok(())
    }

    fn timeout(&mut self) -> Result<i32, WatchdogError> {
        let fd = self.fd()?;
        let mut t = 0;
        // SAFETY: fd is open; t is a c_int the kernel writes.
        unsafe { ioctl::get_timeout(fd, &mut t) }.map_err(|e| self.io("read the timeout", e))?;
        Ok(t)
    }

    fn keepalive(&mut self) -> Result<(), WatchdogError> {
        let fd = self.fd()?;
        let mut dummy = 0;
        // SAFETY: fd is open; the argument is ignored by the kernel.
        unsafe { ioctl::keepalive(fd, &mut dummy) }.map_err(|e| self.io("send a keepalive", e))?;
        Ok(())
    }

    fn close(&mut self) -> Result<(), WatchdogError> {
        if self.file.is_none() {
            return Ok(());
        }
        let device = self.describe();
        let written = write_to(self.file.as_mut(), b"V", "write the magic close", device);
        self.file = None;
        written
    }

    fn describe(&self) -> String {
        let identity = self
            .support
            .map(|s| {
                let end = s.identity.iter().position(|b| *b == 0).unwrap_or(32);
                String::from_utf8_lossy(&s.identity[..end])
                    .trim()
                    .to_string()
            })
            .filter(|s| !s.is_empty());
        match identity {
            Some(id) => format!("Linux watchdog device at {} ({id})", self.path.display()),
            None => format!("Linux watchdog device at {}", self.path.display()),
        }
    }
}

/// Patroni's testing driver: the device path is a FIFO (or file) and every operation is a
/// write a test can read: `Ctimeout=N\n` to set the timeout, `1` per keepalive, `V` before
/// closing.
pub struct TestingDevice {
    path: PathBuf,
    file: Option<File>,
    timeout: i32,
}

impl TestingDevice {
    pub fn new(path: PathBuf) -> TestingDevice {
        TestingDevice {
            path,
            file: None,
            // What Patroni's double reports before a timeout was set.
            timeout: 60,
        }
    }
}

impl Device for TestingDevice {
    fn open(&mut self) -> Result<(), WatchdogError> {
        self.file = Some(open_for_writing(&self.path, true)?);
        Ok(())
    }

    fn is_open(&self) -> bool {
        self.file.is_some()
    }

    fn can_set_timeout(&mut self) -> bool {
        true
    }

    fn can_be_disabled(&mut self) -> bool {
        true
    }

    fn set_timeout(&mut self, seconds: i32) -> Result<(), WatchdogError> {
        let device = self.describe();
        let line = format!("Ctimeout={seconds}\n");
        write_to(
            self.file.as_mut(),
            line.as_bytes(),
            "set the timeout",
            device,
        )?;
        self.timeout = seconds;
        Ok(())
    }

    fn timeout(&mut self) -> Result<i32, WatchdogError> {
        Ok(self.timeout)
    }

    fn keepalive(&mut self) -> Result<(), WatchdogError> {
        let device = self.describe();
        write_to(self.file.as_mut(), b"1", "send a keepalive", device)
    }

    fn close(&mut self) -> Result<(), WatchdogError> {
        if self.file.is_none() {
            return Ok(());
        }
        let device = self.describe();
        let written = write_to(self.file.as_mut(), b"V", "write the magic close", device);
        self.file = None;
        written
    }

    fn describe(&self) -> String {
        format!("watchdog test harness at {}", self.path.display())
    }
}

fn device_for(cfg: &pgha_config::Watchdog) -> Box<dyn Device> {
    match cfg.driver {
        WatchdogDriver::Default => Box::new(LinuxDevice::new(cfg.device.clone())),
        WatchdogDriver::Testing => Box::new(TestingDevice::new(cfg.device.clone())),
    }
}

/// The watchdog policy of one agent (Patroni's semantics).
pub struct Watchdog {
    cfg: pgha_config::Watchdog,
    device: Box<dyn Device>,
    /// The timeout we set on the running device (to notice a ttl change).
    running_timeout: Option<i64>,
    /// The last failed activation and until when (unix ms) it stands: no new attempt before,
    /// so a broken device costs one try per ttl, not one per cycle.
    failed: Option<(String, u64)>,
    /// What was last said about the watchdog at warning level, said once.
    warned: Option<String>,
}

impl Watchdog {
    pub fn new(cfg: &pgha_config::Watchdog) -> Watchdog {
        Watchdog::with_device(cfg, device_for(cfg))
    }

    pub fn with_device(cfg: &pgha_config::Watchdog, device: Box<dyn Device>) -> Watchdog {
        Watchdog {
            cfg: cfg.clone(),
            device,
            running_timeout: None,
            failed: None,
            warned: None,
        }
    }

    /// A reloaded local configuration. A changed device or driver closes the old device; the
    /// next cycle that leads opens the new one.
    pub fn reload(&mut self, cfg: &pgha_config::Watchdog) {
        if *cfg == self.cfg {
            return;
        }
        let same_device = cfg.device == self.cfg.device && cfg.driver == self.cfg.driver;
        if cfg.mode == WatchdogMode::Off || !same_device {
            self.disable();
        }
        if !same_device {
            self.device = device_for(cfg);
        }
        self.cfg = cfg.clone();
        self.failed = None;
        self.warned = None;
    }

    pub fn is_running(&self) -> bool {
        self.device.is_open()
    }

    fn timeout_text(&self, ttl: u64) -> String {
        let timeout = self.cfg.timeout(ttl);
        if self.cfg.safety_margin == -1 {
            format!("watchdog timeout {timeout}s (half the ttl of {ttl}s, watchdog.safety_margin is -1)")
        } else {
            format!(
                "watchdog timeout {timeout}s (ttl {ttl}s - watchdog.safety_margin {}s)",
                self.cfg.safety_margin
            )
        }
    }

    /// Why the timeout this configuration gives cannot work, if it cannot.
    fn unsafe_timeout(&self, ttl: u64, loop_wait: u64) -> Option<String> {
        let timeout = self.cfg.timeout(ttl);
        if timeout < i64::try_from(loop_wait).unwrap_or(i64::MAX) {
            return Some(format!(
                "the {} is shorter than loop_wait {loop_wait}s: it would fire between two HA cycles",
                self.timeout_text(ttl)
            ));
        }
        if !(1..0xFFFF).contains(&timeout) {
            return Some(format!(
                "the {} is out of range (1 to 65534 seconds)",
                self.timeout_text(ttl)
            ));
        }
        None
    }

    /// What the HA decision gets to see. For `required`: unusable when the timeout cannot be
    /// safe, the device is missing or not writable (Patroni's health check), or the last
    /// activation failed less than a ttl ago.
    pub fn view(&self, ttl: u64, loop_wait: u64, now: u64) -> WatchdogView {
        match self.cfg.mode {
            WatchdogMode::Off => return WatchdogView::Off,
            WatchdogMode::Automatic => return WatchdogView::Automatic,
            WatchdogMode::Required if self.is_running() => return WatchdogView::Required,
            WatchdogMode::Required => {}
        }
        if let Some(why) = self.unsafe_timeout(ttl, loop_wait) {
            return WatchdogView::Unusable(why);
        }
        if let Err(e) = nix::unistd::access(&self.cfg.device, nix::unistd::AccessFlags::W_OK) {
            return WatchdogView::Unusable(
                WatchdogError::Open {
                    path: self.cfg.device.clone(),
                    source: e.into(),
                }
                .to_string(),
            );
        }
        match &self.failed {
            Some((why, until)) if now < *until => WatchdogView::Unusable(why.clone()),
            _ => WatchdogView::Required,
        }
    }

    /// `/patroni` says `watchdog_failed` (peers then do not count on this node to lead).
    pub fn failed(&self, ttl: u64, loop_wait: u64, now: u64) -> bool {
        matches!(self.view(ttl, loop_wait, now), WatchdogView::Unusable(_))
    }

    /// Opens the device and sets its timeout, unless it runs already. `Err` (the reason, for
    /// the log) only with `mode: required`; `automatic` goes on without a watchdog.
    pub fn activate(&mut self, ttl: u64, loop_wait: u64, now: u64) -> Result<(), String> {
        if self.cfg.mode == WatchdogMode::Off || self.is_running() {
            return Ok(());
        }
        let outcome = match &self.failed {
            Some((why, until)) if now < *until => Err(why.clone()),
            _ => {
                let tried = self.try_activate(ttl, loop_wait);
                self.failed = tried
                    .as_ref()
                    .err()
                    .map(|why| (why.clone(), now.saturating_add(ttl.saturating_mul(1000))));
                tried
            }
        };
        match outcome {
            Ok(()) => Ok(()),
            Err(why) => {
                if self.cfg.mode == WatchdogMode::Required {
                    return Err(format!(
                        "watchdog.mode is required but the watchdog could not be activated: {why}"
                    ));
                }
                self.say_once(&format!(
                    "{why}; leading without a watchdog (watchdog.mode is automatic)"
                ));
                Ok(())
            }
        }
    }

    /// Automatic mode that was never asked for (no `watchdog` section) stays quiet about a
    /// machine without a watchdog, as Patroni does.
    fn say_once(&mut self, msg: &str) {
        if self.warned.as_deref() == Some(msg) {
            return;
        }
        if self.cfg.explicit {
            warn!("{msg}");
        } else {
            debug!("{msg}");
        }
        self.warned = Some(msg.to_string());
    }

    fn try_activate(&mut self, ttl: u64, loop_wait: u64) -> Result<(), String> {
        if let Some(why) = self.unsafe_timeout(ttl, loop_wait) {
            return Err(why);
        }
        let timeout = self.cfg.timeout(ttl);
        let wanted = i32::try_from(timeout).unwrap_or(i32::MAX);
        self.device.open().map_err(|e| e.to_string())?;
        let set = if self.device.can_set_timeout() {
            self.device.set_timeout(wanted)
        } else {
            Ok(())
        };
        let actual = match set.and_then(|()| self.device.timeout()) {
            Ok(t) => t,
            Err(e) => {
                self.close_quietly();
                return Err(e.to_string());
            }
        };
        let describe = self.device.describe();
        if i64::from(actual) < i64::try_from(loop_wait).unwrap_or(i64::MAX) {
            let why = format!(
                "the timeout {actual}s of {describe} is shorter than loop_wait {loop_wait}s"
            );
            if self.device.can_be_disabled() {
                self.close_quietly();
                return Err(why);
            }
            error!("{why}; it cannot be disabled either");
        }
        if i64::from(actual) > timeout {
            let why = format!(
                "{describe} keeps a timeout of {actual}s, not the safe {}",
                self.timeout_text(ttl)
            );
            if self.cfg.mode == WatchdogMode::Required {
                self.close_quietly();
                return Err(why);
            }
            warn!("{why}: it does not ensure this node is reset before its leader key expires");
        }
        if !self.device.can_be_disabled() {
            warn!("{describe} cannot be disabled: it will reset this machine after pgha gives up the leader key");
        }
        let slack = i64::from(actual) - i64::try_from(loop_wait).unwrap_or(0);
        info!("{describe} activated with {actual} second timeout, timing slack {slack} seconds");
        self.running_timeout = Some(timeout);
        self.warned = None;
        Ok(())
    }

    fn close_quietly(&mut self) {
        if let Err(e) = self.device.close() {
            debug!("closing the watchdog after a failed activation: {e}");
        }
    }

    /// Resets the timer; called after each successful renewal of the leader lock. A changed
    /// ttl updates the timeout first.
    pub fn keepalive(&mut self, ttl: u64) {
        if !self.is_running() {
            return;
        }
        let timeout = self.cfg.timeout(ttl);
        if self.running_timeout != Some(timeout) && (1..0xFFFF).contains(&timeout) {
            if self.device.can_set_timeout() {
                match self.device.set_timeout(timeout as i32) {
                    Ok(()) => info!(
                        "{} updated with {timeout} second timeout",
                        self.device.describe()
                    ),
                    Err(e) => error!("{e}"),
                }
            }
            self.running_timeout = Some(timeout);
        }
        if let Err(e) = self.device.keepalive() {
            error!("{e}");
        }
    }

    /// Stops the watchdog with a magic close: a clean demotion, maintenance mode, shutdown.
    pub fn disable(&mut self) {
        if !self.is_running() {
            return;
        }
        let describe = self.device.describe();
        if !self.device.can_be_disabled() {
            // One last keepalive gives the operator a full timeout to clean up.
            if let Err(e) = self.device.keepalive() {
                error!("{e}");
            }
            let t = self.running_timeout.unwrap_or_default();
            warn!("{describe} cannot be disabled; this machine will be reset in {t} seconds");
        }
        match self.device.close() {
            Ok(()) => info!("{describe} disabled"),
            Err(e) => error!("error while disabling the watchdog: {e}"),
        }
        self.running_timeout = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn cfg(mode: WatchdogMode, device: &Path) -> pgha_config::Watchdog {
        pgha_config::Watchdog {
            mode,
            device: device.to_path_buf(),
            safety_margin: 5,
            driver: WatchdogDriver::Testing,
            explicit: true,
        }
    }

    #[test]
    fn testing_driver_writes_patronis_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wd");
        std::fs::write(&path, "").unwrap();
        let mut w = Watchdog::new(&cfg(WatchdogMode::Required, &path));
        assert_eq!(w.view(30, 10, 0), WatchdogView::Required);
        w.activate(30, 10, 0).unwrap();
        assert!(w.is_running());
        w.keepalive(30);
        w.keepalive(30);
        w.disable();
        assert!(!w.is_running());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "Ctimeout=25\n11V");
        // Reopened on the next activation; a new ttl changes the timeout at a keepalive.
        w.activate(30, 10, 0).unwrap();
        w.keepalive(40);
        w.disable();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "Ctimeout=25\n11VCtimeout=25\nCtimeout=35\n1V"
        );
    }

    #[test]
    fn half_the_ttl_with_safety_margin_minus_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wd");
        std::fs::write(&path, "").unwrap();
        let mut c = cfg(WatchdogMode::Required, &path);
        c.safety_margin = -1;
        let mut w = Watchdog::new(&c);
        w.activate(30, 10, 0).unwrap();
        w.disable();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "Ctimeout=15\nV");
    }

    #[test]
    fn required_with_a_missing_device_is_unusable_and_names_the_key() {
        let path = PathBuf::from("/nonexistent/pgha/watchdog");
        let mut w = Watchdog::new(&cfg(WatchdogMode::Required, &path));
        let WatchdogView::Unusable(why) = w.view(30, 10, 0) else {
            panic!("usable?")
        };
        assert!(
            why.contains("watchdog.device /nonexistent/pgha/watchdog"),
            "{why}"
        );
        let err = w.activate(30, 10, 0).unwrap_err();
        assert!(
            err.contains("watchdog.mode is required") && err.contains("watchdog.device"),
            "{err}"
        );
        assert!(w.failed(30, 10, 0));
    }

    #[test]
    fn automatic_goes_on_without_a_device() {
        let path = PathBuf::from("/nonexistent/pgha/watchdog");
        let mut w = Watchdog::new(&cfg(WatchdogMode::Automatic, &path));
        assert_eq!(w.view(30, 10, 0), WatchdogView::Automatic);
        assert_eq!(w.activate(30, 10, 0), Ok(()));
        assert!(!w.is_running());
        assert!(!w.failed(30, 10, 0));
        let mut off = Watchdog::new(&cfg(WatchdogMode::Off, &path));
        assert_eq!(off.view(30, 10, 0), WatchdogView::Off);
        assert_eq!(off.activate(30, 10, 0), Ok(()));
    }

    #[test]
    fn a_timeout_shorter_than_loop_wait_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wd");
        std::fs::write(&path, "").unwrap();
        // ttl 10 - safety_margin 5 = 5 s, loop_wait 6 s.
        let mut w = Watchdog::new(&cfg(WatchdogMode::Required, &path));
        let WatchdogView::Unusable(why) = w.view(10, 6, 0) else {
            panic!("usable?")
        };
        assert!(
            why.contains("loop_wait 6s") && why.contains("watchdog.safety_margin 5s"),
            "{why}"
        );
        assert!(w.activate(10, 6, 0).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "", "never opened");
    }

    #[test]
    fn a_failed_activation_stands_for_one_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // Nobody reads the FIFO: opening fails at once (ENXIO) rather than blocking.
        let mut w = Watchdog::new(&cfg(WatchdogMode::Required, &path));
        assert_eq!(w.view(30, 10, 1_000), WatchdogView::Required);
        assert!(w.activate(30, 10, 1_000).is_err());
        assert!(matches!(w.view(30, 10, 30_999), WatchdogView::Unusable(_)));
        assert_eq!(w.view(30, 10, 31_000), WatchdogView::Required);
    }

    #[test]
    fn reload_to_off_or_another_device_closes_the_running_one() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "").unwrap();
        std::fs::write(&b, "").unwrap();
        let c = cfg(WatchdogMode::Required, &a);
        let mut w = Watchdog::new(&c);
        w.activate(30, 10, 0).unwrap();
        w.reload(&c);
        assert!(
            w.is_running(),
            "an unchanged configuration keeps it running"
        );
        w.reload(&cfg(WatchdogMode::Required, &b));
        assert!(!w.is_running());
        w.activate(30, 10, 0).unwrap();
        w.reload(&cfg(WatchdogMode::Off, &b));
        assert!(!w.is_running());
        assert_eq!(w.view(30, 10, 0), WatchdogView::Off);
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "Ctimeout=25\nV");
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "Ctimeout=25\nV");
    }

    /// A device that keeps its own timeout and records what it is told.
    struct Fixed {
        timeout: i32,
        open: bool,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Device for Fixed {
        fn open(&mut self) -> Result<(), WatchdogError> {
            self.open = true;
            self.log.lock().unwrap().push("open".into());
            Ok(())
        }
        fn is_open(&self) -> bool {
            self.open
        }
        fn can_set_timeout(&mut self) -> bool {
            false
        }
        fn can_be_disabled(&mut self) -> bool {
            true
        }
        fn set_timeout(&mut self, _: i32) -> Result<(), WatchdogError> {
            unreachable!("cannot set a timeout")
        }
        fn timeout(&mut self) -> Result<i32, WatchdogError> {
            Ok(self.timeout)
        }
        fn keepalive(&mut self) -> Result<(), WatchdogError> {
            self.log.lock().unwrap().push("keepalive".into());
            Ok(())
        }
        fn close(&mut self) -> Result<(), WatchdogError> {
            self.open = false;
            self.log.lock().unwrap().push("close".into());
            Ok(())
        }
        fn describe(&self) -> String {
            "fixed".into()
        }
    }

    #[test]
    fn a_device_whose_timeout_is_too_long_is_not_safe_enough_for_required() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let dev = |t| {
            Box::new(Fixed {
                timeout: t,
                open: false,
                log: log.clone(),
            })
        };
        let path = PathBuf::from("/dev/null");
        let mut w = Watchdog::with_device(&cfg(WatchdogMode::Required, &path), dev(60));
        let err = w.activate(30, 10, 0).unwrap_err();
        assert!(err.contains("keeps a timeout of 60s"), "{err}");
        assert!(!w.is_running());
        // Automatic takes it, with a warning.
        let mut w = Watchdog::with_device(&cfg(WatchdogMode::Automatic, &path), dev(60));
        w.activate(30, 10, 0).unwrap();
        assert!(w.is_running());
        w.keepalive(30);
        w.disable();
        // Shorter than loop_wait: closed again, refused.
        let mut w = Watchdog::with_device(&cfg(WatchdogMode::Automatic, &path), dev(3));
        w.activate(30, 10, 0).unwrap();
        assert!(!w.is_running());
        assert_eq!(
            *log.lock().unwrap(),
            [
                "open",
                "close",
                "open",
                "keepalive",
                "close",
                "open",
                "close"
            ]
        );
    }
}

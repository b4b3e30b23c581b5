//! `ipcx doctor`: prints the system's IPC limits, grouped, then what will bite.

use std::fmt::Write as _;

use ipcx_sys::limits::{Bytes, LimitError, ResourceLimit, SystemLimits};

/// Width of the label column.
const LABEL: usize = 22;
/// Messages are wrapped to this many columns.
const WIDTH: usize = 96;
/// Sizes at or above this are the kernel's "no limit" values (`ULONG_MAX`-ish).
const UNLIMITED_BYTES: u64 = 1 << 60;

/// Reads the limits and prints the report on stdout.
pub fn run() -> anyhow::Result<()> {
    print!("{}", report(&SystemLimits::read()));
    Ok(())
}

/// The whole report as text.
fn report(l: &SystemLimits) -> String {
    let mut r = Report(String::new());
    r.line(&format!("ipcx doctor: IPC limits of this machine (kernel {})", l.kernel_release));

    r.group("Shared memory");
    match &l.dev_shm {
        Ok(s) => {
            r.row("/dev/shm size", Bytes(s.total_bytes).to_string());
            let percent = s.free_bytes.saturating_mul(100) / s.total_bytes.max(1);
            r.row("/dev/shm free", format!("{} ({percent}%)", Bytes(s.free_bytes)));
        }
        Err(e) => r.row("/dev/shm", unknown(e)),
    }

    let mq = &l.posix_mq;
    r.group("POSIX message queues");
    r.row("msg_max", value(&mq.msg_max, |n| format!("{n} messages per queue")));
    r.row("msgsize_max", value(&mq.msgsize_max, |n| bytes(n, "per message")));
    r.row("queues_max", value(&mq.queues_max, |n| format!("{n} queues system-wide")));
    let mount = value(&mq.mount_point, |m| match m {
        Some(point) => format!("mounted at {point}"),
        None => "not mounted".to_owned(),
    });
    r.row("mqueue filesystem", mount);
    r.row("RLIMIT_MSGQUEUE", rlimit(mq.rlimit, |n| Bytes(n).to_string()));

    let sv = &l.sysv;
    r.group("System V");
    r.row("msgmax", value(&sv.msgmax, |n| bytes(n, "per message")));
    r.row("msgmnb", value(&sv.msgmnb, |n| bytes(n, "per queue")));
    r.row("msgmni", value(&sv.msgmni, |n| format!("{n} queues")));
    r.row("shmmax", value(&sv.shmmax, |n| bytes(n, "per segment")));
    let page = l.page_size;
    let shmall = |n: u64| match n.checked_mul(page).filter(|&b| b < UNLIMITED_BYTES) {
        Some(total) => format!("{n} pages, {} in total", Bytes(total)),
        None => format!("unlimited ({n} pages)"),
    };
    r.row("shmall", value(&sv.shmall, shmall));
    r.row("shmmni", value(&sv.shmmni, |n| format!("{n} segments")));
    match &sv.sem {
        Ok(s) => {
            r.row("SEMMSL", format!("{} semaphores per set", s.semmsl));
            r.row("SEMMNS", format!("{} semaphores system-wide", s.semmns));
            r.row("SEMOPM", format!("{} operations per semop", s.semopm));
            r.row("SEMMNI", format!("{} sets", s.semmni));
        }
        Err(e) => r.row("semaphores", unknown(e)),
    }

    r.group("Files and CPUs");
    r.row("RLIMIT_NOFILE", rlimit(l.nofile, |n| n.to_string()));
    r.row("pipe-max-size", value(&l.pipe_max_size, |n| bytes(n, "per pipe")));
    r.row("CPUs available", value(&l.cpus, |n| n.to_string()));

    r.group("Kernel");
    r.row("release", l.kernel_release.clone());
    r.row("page size", Bytes(l.page_size).to_string());

    r.group("What will bite");
    let warnings = l.warnings();
    if warnings.is_empty() {
        r.line("  nothing found");
    }
    for w in &warnings {
        r.wrapped("  - ", &w.message);
    }
    r.0
}

/// A value or `unknown (reason)`.
fn value<T: Clone>(v: &Result<T, LimitError>, show: impl FnOnce(T) -> String) -> String {
    match v {
        Ok(v) => show(v.clone()),
        Err(e) => unknown(e),
    }
}

fn unknown(e: &LimitError) -> String {
    match e {
        LimitError::Unreadable { what, source } => format!("unknown ({what}: {source})"),
        LimitError::Malformed { what } => format!("unknown (unexpected contents in {what})"),
    }
}

/// A size with its exact byte count and what it applies to, or "unlimited" for the
/// kernel's huge sentinel values.
fn bytes(n: u64, per: &str) -> String {
    if n >= UNLIMITED_BYTES {
        format!("unlimited ({n})")
    } else if n < 1024 {
        format!("{} {per}", Bytes(n))
    } else {
        format!("{} ({n} bytes) {per}", Bytes(n))
    }
}

fn rlimit(r: ResourceLimit, show: impl Fn(u64) -> String) -> String {
    let one = |v: Option<u64>| v.map_or("unlimited".to_owned(), &show);
    format!("{} soft, {} hard", one(r.soft), one(r.hard))
}

struct Report(String);

impl Report {
    fn line(&mut self, text: &str) {
        self.0.push_str(text);
        self.0.push('\n');
    }

    fn group(&mut self, title: &str) {
        let _ = write!(self.0, "\n{title}\n");
    }

    fn row(&mut self, label: &str, value: String) {
        let _ = writeln!(self.0, "  {label:<LABEL$} {value}");
    }

    /// `text` wrapped at [`WIDTH`], the first line after `lead`, the rest aligned under it.
    fn wrapped(&mut self, lead: &str, text: &str) {
        let indent = " ".repeat(lead.len());
        let mut current = lead.to_owned();
        for word in text.split_whitespace() {
            if current.len() > lead.len() && current.len() + 1 + word.len() > WIDTH {
                self.line(&current);
                current = indent.clone();
            }
            if current.len() > lead.len() {
                current.push(' ');
            }
            current.push_str(word);
        }
        self.line(&current);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENOENT: ipcx_sys::Errno = ipcx_sys::Errno::NOENT;

    #[test]
    fn unknown_values_say_why_and_warnings_wrap() {
        let mut l = SystemLimits::read();
        l.posix_mq.msg_max =
            Err(LimitError::Unreadable { what: "/proc/sys/fs/mqueue/msg_max", source: ENOENT });
        l.sysv.sem = Err(LimitError::Malformed { what: "/proc/sys/kernel/sem" });
        l.cpus = Ok(1);
        let text = report(&l);
        assert!(text.contains("  msg_max                unknown (/proc/sys/fs/mqueue/msg_max: "));
        assert!(text.contains("unknown (unexpected contents in /proc/sys/kernel/sem)"));
        assert!(text.contains("  - only 1 CPU is available"));
        assert!(text.lines().all(|line| line.len() <= WIDTH || !line.starts_with("  - ")));
    }

    #[test]
    fn sizes_show_units_bytes_and_unlimited() {
        assert_eq!(bytes(100, "per pipe"), "100 bytes per pipe");
        assert_eq!(bytes(8192, "per queue"), "8 KiB (8192 bytes) per queue");
        assert_eq!(bytes(18_446_744_073_692_774_399, "x"), "unlimited (18446744073692774399)");
        let r = ResourceLimit { soft: Some(1024), hard: None };
        assert_eq!(rlimit(r, |n| n.to_string()), "1024 soft, unlimited hard");
    }
}

//! Parsers of the `/proc` texts [`SystemLimits`](super::SystemLimits) reads. Each takes the
//! whole file as `&str` and returns `None` (or nothing found) on anything unexpected.

use super::SemLimits;

/// A single unsigned number, as in `/proc/sys/fs/mqueue/msg_max` (`"10\n"`).
pub fn parse_u64(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The four numbers of `/proc/sys/kernel/sem`: `SEMMSL SEMMNS SEMOPM SEMMNI`.
pub fn parse_sem(text: &str) -> Option<SemLimits> {
    let mut it = text.split_whitespace().map(str::parse::<u64>);
    let mut next = || it.next()?.ok();
    let limits = SemLimits { semmsl: next()?, semmns: next()?, semopm: next()?, semmni: next()? };
    match next() {
        None => Some(limits),
        Some(_) => None,
    }
}

/// Where an `mqueue` filesystem is mounted according to `/proc/self/mountinfo`, preferring
/// `/dev/mqueue`; `None` if it is mounted nowhere.
///
/// A mountinfo line is `id parent major:minor root mount-point options [optional...] -
/// fstype source super-options`; the mount point escapes spaces and the like as `\040`.
pub fn mqueue_mount_point(mountinfo: &str) -> Option<String> {
    let mut found: Option<String> = None;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        if right.split_whitespace().next() != Some("mqueue") {
            continue;
        }
        let Some(point) = left.split_whitespace().nth(4) else { continue };
        let point = unescape(point);
        if point == "/dev/mqueue" {
            return Some(point);
        }
        found.get_or_insert(point);
    }
    found
}

/// Undoes the octal escapes (`\040` for a space) the kernel puts in mount points.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let digits = bytes.get(i + 1..i + 4);
        let octal = digits.filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                let v = d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_numbers() {
        assert_eq!(parse_u64("10\n"), Some(10));
        assert_eq!(parse_u64("  18446744073692774399\n"), Some(18_446_744_073_692_774_399));
        assert_eq!(parse_u64(""), None);
        assert_eq!(parse_u64("-1\n"), None);
        assert_eq!(parse_u64("12 13\n"), None);
        assert_eq!(parse_u64("99999999999999999999999\n"), None);
    }

    #[test]
    fn sem_line() {
        let s = parse_sem("32000\t1024000000\t500\t32000\n").unwrap();
        assert_eq!((s.semmsl, s.semmns, s.semopm, s.semmni), (32000, 1_024_000_000, 500, 32000));
        assert_eq!(parse_sem("250 32000 32 128").map(|s| s.semmni), Some(128));
        assert_eq!(parse_sem("250 32000 32"), None);
        assert_eq!(parse_sem("250 32000 32 128 7"), None);
        assert_eq!(parse_sem("250 x 32 128"), None);
        assert_eq!(parse_sem(""), None);
    }

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
25 24 0:23 / /dev/shm rw,relatime shared:4 - tmpfs tmpfs rw,size=24683656k
31 24 0:28 / /srv/my\\040queues rw,relatime - mqueue mqueue rw
32 24 0:28 / /dev/mqueue rw,nosuid,nodev,noexec,relatime shared:14 - mqueue mqueue rw
";

    #[test]
    fn mqueue_mounts() {
        assert_eq!(mqueue_mount_point(MOUNTINFO).as_deref(), Some("/dev/mqueue"));
        let elsewhere: String = MOUNTINFO.lines().take(3).map(|l| format!("{l}\n")).collect();
        assert_eq!(mqueue_mount_point(&elsewhere).as_deref(), Some("/srv/my queues"));
        let none: String = MOUNTINFO.lines().take(2).map(|l| format!("{l}\n")).collect();
        assert_eq!(mqueue_mount_point(&none), None);
        assert_eq!(mqueue_mount_point(""), None);
        // Truncated or garbled lines are skipped, not trusted.
        assert_eq!(mqueue_mount_point("32 24 - mqueue mqueue rw\ngarbage\n"), None);
    }

    #[test]
    fn unescapes_octal_only() {
        assert_eq!(unescape("a\\040b"), "a b");
        assert_eq!(unescape("a\\134b"), "a\\b");
        assert_eq!(unescape("tail\\04"), "tail\\04");
        assert_eq!(unescape("x\\9zz"), "x\\9zz");
    }
}

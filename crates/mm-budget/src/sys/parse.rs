//! Pure parsers for the kernel's memory files.
//!
//! Each takes the file's text and returns typed figures or a [`BudgetError::Parse`]; none
//! reads a file, so they are tested against both real files and hand-made malformed text.
//! A field that is absent is `None`; a field that is present but malformed is an error, never
//! a made-up 0.

use std::borrow::Cow;

use crate::BudgetError;

/// Memory lines of `/proc/<pid>/status`, in bytes. Each is `None` when the kernel does not
/// report it (kernel threads have no `VmRSS`; `RssAnon`/`RssFile`/`RssShmem` exist since
/// Linux 4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct StatusMemory {
    /// `VmRSS`: resident set size.
    pub vm_rss: Option<u64>,
    /// `VmHWM`: peak resident set size.
    pub vm_hwm: Option<u64>,
    /// `RssAnon`: resident anonymous memory (heap, stacks).
    pub rss_anon: Option<u64>,
    /// `RssFile`: resident file-backed memory (code, mapped files such as models).
    pub rss_file: Option<u64>,
    /// `RssShmem`: resident shared memory.
    pub rss_shmem: Option<u64>,
}

/// Figures of `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemInfo {
    /// `MemTotal`: usable RAM. Always present in a valid file.
    pub total: u64,
    /// `MemFree`: RAM not used at all.
    pub free: Option<u64>,
    /// `MemAvailable`: the kernel's estimate of RAM available without swapping (Linux 3.14+).
    pub available: Option<u64>,
}

/// One line of `/proc/self/cgroup` (`hierarchy-id:controllers:path`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupLine<'a> {
    /// Hierarchy ID; 0 for the cgroup v2 unified hierarchy.
    pub hierarchy: u32,
    /// Comma-separated controllers (empty for v2).
    pub controllers: &'a str,
    /// The cgroup's path relative to the hierarchy's root.
    pub path: &'a str,
}

/// A cgroup file system mount, from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount<'a> {
    /// The directory of the hierarchy that is mounted (field 4; `/` unless a sub-tree is bind
    /// mounted).
    pub root: Cow<'a, str>,
    /// Where it is mounted (field 5).
    pub mount_point: Cow<'a, str>,
}

/// Values at or above this in cgroup v1 `memory.limit_in_bytes` mean "no limit" (the kernel
/// reports its page-counter maximum, `0x7FFF_FFFF_FFFF_F000` with 4 KiB pages).
pub const CGROUP_V1_UNLIMITED: u64 = 1 << 62;

/// A decimal `u64` made only of ASCII digits (no sign, no spaces); `None` for anything else,
/// including overflow.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Resident pages: the second field of `/proc/self/statm`. Multiply by the page size for bytes.
///
/// # Errors
/// [`BudgetError::Parse`] if the field is missing or not a number.
pub fn statm_resident_pages(text: &str) -> Result<u64, BudgetError> {
    const FILE: &str = "/proc/self/statm";
    let mut fields = text.split_ascii_whitespace();
    let size = fields
        .next()
        .ok_or_else(|| BudgetError::parse(FILE, "empty file", text))?;
    if number(size).is_none() {
        return Err(BudgetError::parse(FILE, "size is not a number", text));
    }
    let resident = fields
        .next()
        .ok_or_else(|| BudgetError::parse(FILE, "resident field missing", text))?;
    number(resident).ok_or_else(|| BudgetError::parse(FILE, "resident is not a number", text))
}

/// Parses a `Key:   <n> kB` line value into bytes.
fn kib_value(file: &'static str, key: &str, value: &str) -> Result<u64, BudgetError> {
    let mut parts = value.split_ascii_whitespace();
    let (Some(n), Some("kB"), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(BudgetError::parse(
            file,
            &format!("{key} is not \"<n> kB\""),
            value,
        ));
    };
    let kib = number(n)
        .ok_or_else(|| BudgetError::parse(file, &format!("{key} is not a number"), value))?;
    kib.checked_mul(1024)
        .ok_or_else(|| BudgetError::parse(file, &format!("{key} overflows u64 bytes"), value))
}

/// Iterates `Key: value` lines, yielding `(key, value)`; lines without a colon are errors.
fn key_values<'a>(
    file: &'static str,
    text: &'a str,
) -> impl Iterator<Item = Result<(&'a str, &'a str), BudgetError>> + 'a {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(move |line| {
            line.split_once(':')
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or_else(|| BudgetError::parse(file, "line without ':'", line))
        })
}

/// The memory lines of `/proc/self/status`. Other lines are skipped without being parsed.
///
/// # Errors
/// [`BudgetError::Parse`] if a line has no `:` or a memory line is malformed or overflows.
pub fn status(text: &str) -> Result<StatusMemory, BudgetError> {
    const FILE: &str = "/proc/self/status";
    let mut s = StatusMemory::default();
    for kv in key_values(FILE, text) {
        let (key, value) = kv?;
        let slot = match key {
            "VmRSS" => &mut s.vm_rss,
            "VmHWM" => &mut s.vm_hwm,
            "RssAnon" => &mut s.rss_anon,
            "RssFile" => &mut s.rss_file,
            "RssShmem" => &mut s.rss_shmem,
            _ => continue,
        };
        *slot = Some(kib_value(FILE, key, value)?);
    }
    Ok(s)
}

/// `MemTotal`, `MemFree` and `MemAvailable` of `/proc/meminfo`.
///
/// # Errors
/// [`BudgetError::Parse`] if `MemTotal` is missing, a line has no `:`, or one of the three
/// lines is malformed or overflows.
pub fn meminfo(text: &str) -> Result<MemInfo, BudgetError> {
    const FILE: &str = "/proc/meminfo";
    let (mut total, mut free, mut available) = (None, None, None);
    for kv in key_values(FILE, text) {
        let (key, value) = kv?;
        let slot = match key {
            "MemTotal" => &mut total,
            "MemFree" => &mut free,
            "MemAvailable" => &mut available,
            _ => continue,
        };
        *slot = Some(kib_value(FILE, key, value)?);
    }
    let total = total.ok_or_else(|| BudgetError::parse(FILE, "MemTotal missing", text))?;
    Ok(MemInfo {
        total,
        free,
        available,
    })
}

/// The lines of `/proc/self/cgroup`.
///
/// # Errors
/// [`BudgetError::Parse`] if a line does not have three `:`-separated fields with a numeric
/// hierarchy ID.
pub fn proc_cgroup(text: &str) -> Result<Vec<CgroupLine<'_>>, BudgetError> {
    const FILE: &str = "/proc/self/cgroup";
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let mut parts = line.splitn(3, ':');
            let (Some(id), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(BudgetError::parse(
                    FILE,
                    "expected id:controllers:path",
                    line,
                ));
            };
            let hierarchy = number(id)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| BudgetError::parse(FILE, "hierarchy id is not a number", line))?;
            Ok(CgroupLine {
                hierarchy,
                controllers,
                path,
            })
        })
        .collect()
}

/// The path of the cgroup v2 hierarchy (`0::<path>`), if the process is in one.
///
/// # Errors
/// As [`proc_cgroup`].
pub fn cgroup_v2_path(text: &str) -> Result<Option<&str>, BudgetError> {
    Ok(proc_cgroup(text)?
        .into_iter()
        .find(|l| l.hierarchy == 0 && l.controllers.is_empty())
        .map(|l| l.path))
}

/// The path in the cgroup v1 hierarchy that has the `memory` controller, if any.
///
/// # Errors
/// As [`proc_cgroup`].
pub fn cgroup_v1_memory_path(text: &str) -> Result<Option<&str>, BudgetError> {
    Ok(proc_cgroup(text)?
        .into_iter()
        .find(|l| l.hierarchy != 0 && l.controllers.split(',').any(|c| c == "memory"))
        .map(|l| l.path))
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(s: &str) -> Cow<'_, str> {
    if !s.contains('\\') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).and_then(|d| {
            d.iter()
                .all(|c| (b'0'..=b'7').contains(c))
                .then(|| d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0')))
        });
        match (b[i], octal.and_then(|v| u8::try_from(v).ok())) {
            (b'\\', Some(v)) => {
                out.push(v);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// The first mount in `/proc/self/mountinfo` whose file system type is `fstype` (`"cgroup2"`,
/// or `"cgroup"` for v1) and, if `super_option` is given, whose super options include it
/// (`"memory"` finds the v1 memory hierarchy).
///
/// # Errors
/// [`BudgetError::Parse`] if a line lacks the `-` separator or the fields around it.
pub fn find_cgroup_mount<'a>(
    text: &'a str,
    fstype: &str,
    super_option: Option<&str>,
) -> Result<Option<CgroupMount<'a>>, BudgetError> {
    const FILE: &str = "/proc/self/mountinfo";
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Some((head, tail)) = line.split_once(" - ") else {
            return Err(BudgetError::parse(
                FILE,
                "line without ' - ' separator",
                line,
            ));
        };
        let mut h = head.split(' ');
        let (Some(_id), Some(_parent), Some(_dev), Some(root), Some(mount_point)) =
            (h.next(), h.next(), h.next(), h.next(), h.next())
        else {
            return Err(BudgetError::parse(
                FILE,
                "fewer than 5 fields before ' - '",
                line,
            ));
        };
        let mut t = tail.split(' ');
        let (Some(fs), Some(_source), Some(opts)) = (t.next(), t.next(), t.next()) else {
            return Err(BudgetError::parse(
                FILE,
                "fewer than 3 fields after ' - '",
                line,
            ));
        };
        if fs != fstype {
            continue;
        }
        if let Some(opt) = super_option
            && !opts.split(',').any(|o| o == opt)
        {
            continue;
        }
        return Ok(Some(CgroupMount {
            root: unescape(root),
            mount_point: unescape(mount_point),
        }));
    }
    Ok(None)
}

/// A cgroup v2 `memory.max` (or `memory.high`): `max` is `None` (no limit), else bytes.
///
/// # Errors
/// [`BudgetError::Parse`] for anything other than `max` or a decimal number.
pub fn cgroup_v2_limit(text: &str) -> Result<Option<u64>, BudgetError> {
    match text.trim() {
        "max" => Ok(None),
        t => number(t)
            .map(Some)
            .ok_or_else(|| BudgetError::parse("memory.max", "neither \"max\" nor a number", text)),
    }
}

/// A cgroup v1 `memory.limit_in_bytes`: values at or above [`CGROUP_V1_UNLIMITED`] are
/// `None` (no limit).
///
/// # Errors
/// [`BudgetError::Parse`] if it is not a decimal number.
pub fn cgroup_v1_limit(text: &str) -> Result<Option<u64>, BudgetError> {
    let n = number(text.trim())
        .ok_or_else(|| BudgetError::parse("memory.limit_in_bytes", "not a number", text))?;
    Ok((n < CGROUP_V1_UNLIMITED).then_some(n))
}

/// A byte counter file (`memory.current`, `memory.usage_in_bytes`).
///
/// # Errors
/// [`BudgetError::Parse`] if it is not a decimal number.
pub fn cgroup_counter(file: &'static str, text: &str) -> Result<u64, BudgetError> {
    number(text.trim()).ok_or_else(|| BudgetError::parse(file, "not a number", text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_strict() {
        assert_eq!(number("0"), Some(0));
        assert_eq!(number("18446744073709551615"), Some(u64::MAX));
        assert_eq!(number("18446744073709551616"), None);
        assert_eq!(number("+5"), None);
        assert_eq!(number("-5"), None);
        assert_eq!(number(""), None);
        assert_eq!(number("1e3"), None);
        assert_eq!(number(" 5"), None);
    }

    #[test]
    fn unescape_octal() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/trailing\\"), "/trailing\\");
        assert_eq!(unescape("/bad\\09x"), "/bad\\09x");
        assert_eq!(unescape("/back\\134slash"), "/back\\slash");
    }
}

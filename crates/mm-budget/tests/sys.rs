//! `mm_budget::sys`: the parsers against the real kernel files of the machine running the
//! tests and against malformed text; the readers against each other.

use mm_budget::BudgetError;
use mm_budget::sys::{self, parse};

fn is_parse_error<T: std::fmt::Debug>(r: Result<T, BudgetError>) -> bool {
    matches!(r, Err(BudgetError::Parse { .. }))
}

#[cfg(target_os = "linux")]
mod real {
    use super::*;

    fn read(path: &str) -> String {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn real_statm_status_agree() {
        let pages = parse::statm_resident_pages(&read("/proc/self/statm")).unwrap();
        assert!(pages > 0);
        let status = parse::status(&read("/proc/self/status")).unwrap();
        let vm_rss = status.vm_rss.expect("a user process has VmRSS");
        let hwm = status.vm_hwm.expect("a user process has VmHWM");
        assert!(hwm >= vm_rss);
        if let (Some(anon), Some(file), Some(shmem)) =
            (status.rss_anon, status.rss_file, status.rss_shmem)
        {
            assert_eq!(anon + file + shmem, vm_rss, "VmRSS is the sum of its parts");
        }
        // statm and status are read at different moments; other test threads allocate in
        // between, so compare loosely.
        let statm_bytes = pages * sys::page_size().unwrap();
        let (lo, hi) = (vm_rss.min(statm_bytes), vm_rss.max(statm_bytes));
        assert!(hi - lo <= hi / 2, "statm {statm_bytes} vs VmRSS {vm_rss}");
    }

    #[test]
    fn rss_follows_touched_memory() {
        const SIZE: usize = 64 << 20;
        let before = sys::rss_bytes().unwrap();
        let block = vec![1u8; SIZE]; // memset touches every page
        let during = sys::rss_bytes().unwrap();
        assert!(
            during >= before + (SIZE as u64) / 2,
            "rss {before} -> {during} after touching 64 MiB"
        );
        assert_eq!(
            block.iter().map(|&b| u64::from(b)).sum::<u64>(),
            SIZE as u64
        );
    }

    #[test]
    fn real_meminfo() {
        let m = parse::meminfo(&read("/proc/meminfo")).unwrap();
        assert!(m.total > 1 << 20, "MemTotal {}", m.total);
        let free = m.free.expect("MemFree is always reported");
        assert!(free <= m.total);
        if let Some(avail) = m.available {
            assert!(avail <= m.total);
        }
        let live = sys::meminfo().unwrap();
        assert_eq!(live.total, m.total, "MemTotal does not change");
    }

    #[test]
    fn real_cgroup_files_parse() {
        let cgroup = read("/proc/self/cgroup");
        let lines = parse::proc_cgroup(&cgroup).unwrap();
        assert!(!lines.is_empty());
        for l in &lines {
            assert!(l.path.starts_with('/'), "{l:?}");
        }
        let mountinfo = read("/proc/self/mountinfo");
        // Every line of the real file must parse (a lookup that finds nothing scans it all).
        assert_eq!(
            parse::find_cgroup_mount(&mountinfo, "no-such-fs", None).unwrap(),
            None
        );
        if let Some(m) = parse::find_cgroup_mount(&mountinfo, "cgroup2", None).unwrap() {
            assert!(std::path::Path::new(m.mount_point.as_ref()).is_dir());
        }
    }

    #[test]
    fn real_cgroup_memory_is_consistent() {
        match sys::cgroup_memory().unwrap() {
            None => eprintln!("not in a memory cgroup: nothing more to check"),
            Some(c) => {
                eprintln!("{c:?}");
                assert!(c.path.is_dir(), "{c:?}");
                assert!(c.limit.is_none_or(|l| l > 0));
                // The cgroup is charged at least for this process's anonymous memory.
                if let (Some(cur), Ok(s)) = (c.current, sys::status_memory())
                    && let Some(anon) = s.rss_anon
                {
                    assert!(cur >= anon / 2, "cgroup usage {cur} vs RssAnon {anon}");
                }
            }
        }
    }

    #[test]
    fn default_limit_is_three_quarters_of_something_real() {
        let limit = sys::default_limit().unwrap();
        let total = sys::meminfo().unwrap().total;
        assert!(limit > 0 && limit <= total);
        let cg = sys::cgroup_memory().unwrap().and_then(|c| c.limit);
        let base = cg.map_or(total, |l| l.min(total));
        assert_eq!(limit, (u128::from(base) * 3 / 4) as u64);
        // And it makes a valid budget.
        let config = mm_budget::BudgetConfig::from_system().unwrap();
        assert_eq!(config.limit(), limit);
        mm_budget::MemoryBudget::new(config).unwrap();
    }
}

#[test]
fn statm_malformed() {
    assert_eq!(
        parse::statm_resident_pages("100 20 3 4 0 5 0\n").unwrap(),
        20
    );
    assert!(is_parse_error(parse::statm_resident_pages("")));
    assert!(is_parse_error(parse::statm_resident_pages("   \n")));
    assert!(is_parse_error(parse::statm_resident_pages("100")));
    assert!(is_parse_error(parse::statm_resident_pages("abc 20")));
    assert!(is_parse_error(parse::statm_resident_pages("100 x")));
    assert!(is_parse_error(parse::statm_resident_pages("100 -20")));
    assert!(is_parse_error(parse::statm_resident_pages(
        "100 99999999999999999999"
    )));
}

#[test]
fn status_malformed_and_missing() {
    let ok = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nRssAnon:\t 512 kB\nThreads:\t1\n";
    let s = parse::status(ok).unwrap();
    assert_eq!(s.vm_rss, Some(1 << 20));
    assert_eq!(s.vm_hwm, Some(2 << 20));
    assert_eq!(s.rss_anon, Some(512 << 10));
    assert_eq!(s.rss_file, None, "absent, not 0");
    // A kernel thread: no memory lines at all.
    let s = parse::status("Name:\tkthreadd\nState:\tS (sleeping)\n").unwrap();
    assert_eq!((s.vm_rss, s.rss_anon), (None, None));
    assert!(is_parse_error(parse::status("VmRSS:\t12 MB\n")));
    assert!(is_parse_error(parse::status("VmRSS:\tabc kB\n")));
    assert!(is_parse_error(parse::status("VmRSS:\t12\n")));
    assert!(is_parse_error(parse::status("VmRSS:\t12 kB extra\n")));
    assert!(is_parse_error(parse::status(
        "VmRSS:\t18446744073709551615 kB\n"
    )));
    assert!(is_parse_error(parse::status("VmRSS 12 kB\n")));
}

#[test]
fn meminfo_malformed_and_missing() {
    let m = parse::meminfo("MemTotal: 1 kB\nMemFree: 0 kB\n").unwrap();
    assert_eq!((m.total, m.free, m.available), (1024, Some(0), None));
    assert!(
        is_parse_error(parse::meminfo("MemFree: 5 kB\n")),
        "MemTotal required"
    );
    assert!(is_parse_error(parse::meminfo("")));
    assert!(is_parse_error(parse::meminfo("MemTotal: lots kB\n")));
    assert!(is_parse_error(parse::meminfo(
        "MemTotal: 99999999999999999 kB\n"
    )));
    assert!(is_parse_error(parse::meminfo(
        "MemTotal: 5 kB\ngarbage line\n"
    )));
}

#[test]
fn proc_cgroup_lines() {
    assert_eq!(parse::cgroup_v2_path("0::/\n").unwrap(), Some("/"));
    assert_eq!(parse::cgroup_v2_path("0::/a:b\n").unwrap(), Some("/a:b"));
    let hybrid = "5:cpu,cpuacct:/x\n4:memory:/process/abc\n0::/\n";
    assert_eq!(
        parse::cgroup_v1_memory_path(hybrid).unwrap(),
        Some("/process/abc")
    );
    assert_eq!(parse::cgroup_v2_path(hybrid).unwrap(), Some("/"));
    assert_eq!(parse::cgroup_v1_memory_path("0::/only/v2\n").unwrap(), None);
    assert_eq!(parse::cgroup_v2_path("4:memory:/v1\n").unwrap(), None);
    assert!(is_parse_error(parse::proc_cgroup("garbage\n")));
    assert!(is_parse_error(parse::proc_cgroup("x::/\n")));
    assert!(is_parse_error(parse::proc_cgroup("99999999999::/\n")));
    assert!(is_parse_error(parse::proc_cgroup("0:/\n")));
}

#[test]
fn mountinfo_lookup() {
    let text = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime master:2 - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 /docker/abc /sys/fs/my\\040cgroup rw,relatime - cgroup2 cgroup2 rw
";
    let v2 = parse::find_cgroup_mount(text, "cgroup2", None)
        .unwrap()
        .unwrap();
    assert_eq!(v2.root, "/docker/abc");
    assert_eq!(v2.mount_point, "/sys/fs/my cgroup");
    let v1 = parse::find_cgroup_mount(text, "cgroup", Some("memory"))
        .unwrap()
        .unwrap();
    assert_eq!(v1.mount_point, "/sys/fs/cgroup/memory");
    assert_eq!(
        parse::find_cgroup_mount(text, "cgroup", Some("pids")).unwrap(),
        None
    );
    assert!(is_parse_error(parse::find_cgroup_mount(
        "22 1 8:1 / / rw\n",
        "x",
        None
    )));
    assert!(is_parse_error(parse::find_cgroup_mount(
        "22 1 - ext4 a b\n",
        "x",
        None
    )));
    assert!(is_parse_error(parse::find_cgroup_mount(
        "1 2 3 / /m rw - ext4\n",
        "x",
        None
    )));
}

#[test]
fn cgroup_values() {
    assert_eq!(parse::cgroup_v2_limit("max\n").unwrap(), None);
    assert_eq!(
        parse::cgroup_v2_limit("1073741824\n").unwrap(),
        Some(1 << 30)
    );
    assert_eq!(parse::cgroup_v2_limit("0\n").unwrap(), Some(0));
    assert!(is_parse_error(parse::cgroup_v2_limit("")));
    assert!(is_parse_error(parse::cgroup_v2_limit("-1\n")));
    assert!(is_parse_error(parse::cgroup_v2_limit("MAX\n")));
    assert!(is_parse_error(parse::cgroup_v2_limit(
        "99999999999999999999\n"
    )));
    assert_eq!(
        parse::cgroup_v1_limit("9223372036854771712\n").unwrap(),
        None
    );
    assert_eq!(
        parse::cgroup_v1_limit("536870912\n").unwrap(),
        Some(512 << 20)
    );
    assert!(is_parse_error(parse::cgroup_v1_limit("max\n")));
    assert_eq!(
        parse::cgroup_counter("memory.current", "4096\n").unwrap(),
        4096
    );
    assert!(is_parse_error(parse::cgroup_counter(
        "memory.current",
        "4 096\n"
    )));
}

#[test]
fn parse_errors_are_bounded_and_actionable() {
    let huge = "x".repeat(100_000);
    let Err(BudgetError::Parse { file, detail }) = parse::meminfo(&huge) else {
        panic!("expected a parse error");
    };
    assert_eq!(file, "/proc/meminfo");
    assert!(
        detail.len() < 200,
        "excerpt is bounded: {} bytes",
        detail.len()
    );
    let msg = parse::statm_resident_pages("abc").unwrap_err().to_string();
    assert!(msg.contains("/proc/self/statm"), "{msg}");
}

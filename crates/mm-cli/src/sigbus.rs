//! One line, not a crash dump, when a mapped model file is truncated under `mm`.
//!
//! `mm` maps the files it reads. If another process truncates a file while it is mapped, the
//! next read of a vanished page raises `SIGBUS`, which would kill the process with the
//! shell's "Bus error (core dumped)". The handler installed here prints the same kind of
//! one-line message as every other bad-file error, naming the file, and exits with status 1.

use std::path::Path;
use std::sync::OnceLock;

/// The message for the file being read, formatted before it is mapped (a signal handler
/// may not allocate or format).
static MESSAGE: OnceLock<Box<[u8]>> = OnceLock::new();

const GENERIC: &[u8] =
    b"mm: a mapped file was truncated or changed while being read (SIGBUS); re-run on a complete file that nothing else modifies\n";

/// Records `path` as the file named by a later `SIGBUS` message. Only the first call counts:
/// `mm` maps one file per run.
pub fn watch(path: &Path) {
    let _ = MESSAGE.get_or_init(|| {
        format!(
            "mm: {}: the file was truncated or changed while mapped (SIGBUS); re-run on a complete file that nothing else modifies\n",
            path.display().to_string().replace(['\n', '\r'], " ")
        )
        .into_bytes()
        .into_boxed_slice()
    });
}

/// For a process that maps many files over its life (`mm mcp`): the message names `what`
/// (the command) instead of one file. Call it before any [`watch`], which then changes
/// nothing.
pub fn watch_many(what: &str) {
    let _ = MESSAGE.get_or_init(|| {
        format!(
            "{what}: a mapped model file was truncated or changed while mapped (SIGBUS); replace model files by rename, never rewrite them in place\n"
        )
        .into_bytes()
        .into_boxed_slice()
    });
}

extern "C" fn on_sigbus(_: libc::c_int) {
    let msg: &[u8] = MESSAGE.get().map_or(GENERIC, |m| m);
    // SAFETY: `write` and `_exit` are async-signal-safe; `msg` is a static or a leaked-for-
    // the-process `OnceLock` value that is never freed or mutated once set (reading an
    // initialised `OnceLock` is one atomic load).
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::_exit(1);
    }
}

/// Installs the handler for the rest of the process.
pub fn install() {
    // SAFETY: a zeroed `sigaction` is a valid "no flags, empty mask" value; the handler
    // only calls async-signal-safe functions (see `on_sigbus`). A failure leaves the
    // default action (the process dies of the signal), which is only less friendly.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigbus as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file truncated under its map: the child (this test binary re-run on this test)
    /// reads a vanished page and must exit 1 with one line naming the file, not die of the
    /// signal.
    #[test]
    fn truncated_map_gives_one_line_and_status_1() {
        const CHILD: &str = "MM_CLI_SIGBUS_CHILD";
        if let Some(dir) = std::env::var_os(CHILD) {
            install();
            let path = Path::new(&dir).join("model.gguf");
            std::fs::write(&path, vec![7u8; 1 << 16]).unwrap();
            watch(&path);
            let map = crate::commands::map(&path).unwrap().unwrap();
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(0)
                .unwrap();
            let byte = std::hint::black_box(&map[..])[(1 << 16) - 1];
            eprintln!("read {byte} from a truncated map");
            std::process::exit(0);
        }
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sigbus::tests::truncated_map_gives_one_line_and_status_1",
                "--nocapture",
            ])
            .env(CHILD, dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let last: Vec<&str> = err.lines().filter(|l| l.starts_with("mm: ")).collect();
        if std::env::var_os("MM_UNDER_SANITIZER").is_some() {
            // The sanitizer takes SIGBUS itself.
            assert!(!out.status.success(), "{err}");
            return;
        }
        assert_eq!(out.status.code(), Some(1), "{:?}: {err}", out.status);
        assert_eq!(last.len(), 1, "{err}");
        assert!(
            last[0].contains("model.gguf") && last[0].contains("SIGBUS"),
            "{err}"
        );
    }
}

//! The command line: bad arguments exit with 2 and say why, before any work is done.

use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mm-stress"))
        .args(args)
        .output()
        .expect("the binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_every_option() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, Some(0));
    for opt in ["--quick", "--json", "--soak", "--model", "--inject-leak"] {
        assert!(out.contains(opt), "{opt} missing from:\n{out}");
    }
}

#[test]
fn bad_arguments_exit_2_with_a_reason() {
    for (args, says) in [
        (&["--frobnicate"][..], "unknown argument"),
        (&["--soak"][..], "needs a value"),
        (&["--soak", "ten minutes"][..], "not a duration"),
        (&["--soak=5parsecs"][..], "unknown unit"),
        (&["--model", "/nonexistent/model.gguf"][..], "no such file"),
        (&["--inject-leak", "lots"][..], "not a byte count"),
    ] {
        let (code, out, err) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {out}{err}");
        assert!(err.contains(says), "{args:?}: expected `{says}` in {err}");
        assert!(out.is_empty(), "{args:?} started a run: {out}");
    }
}

//! The README's walkthrough, run as written: `kratos-jit serve --dev`, then the walkthrough block
//! in one `bash` session (so that a step may use what an earlier one set), the output of each
//! step — the lines since the previous `# expect:` line — checked against the `# expect:` line
//! that ends it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Dev(Child);

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// (step, expected fragment of its output), in README order.
fn walkthrough() -> Vec<(String, String)> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find("<!-- walkthrough:start -->")
        .expect("the README has a walkthrough");
    let end = readme
        .find("<!-- walkthrough:end -->")
        .expect("the walkthrough ends");
    let mut steps = Vec::new();
    let mut step = String::new();
    for line in readme[start..end].lines() {
        if let Some(expected) = line.strip_prefix("# expect: ") {
            assert!(!step.trim().is_empty(), "an expect line without a step");
            steps.push((std::mem::take(&mut step), expected.to_owned()));
        } else if !line.starts_with("```") && !line.starts_with("<!--") {
            step.push_str(line);
            step.push('\n');
        }
    }
    assert!(
        step.lines()
            .all(|l| l.trim().is_empty() || l.starts_with('#')),
        "commands after the last expect line: {step}"
    );
    steps
}

fn wait_for(port: u16) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_readme_walkthrough_works_as_written() {
    let steps = walkthrough();
    assert!(steps.len() >= 6, "{steps:?}");
    let dev = Dev(Command::new(env!("CARGO_BIN_EXE_kratos-jit"))
        .args(["serve", "--dev"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("KRATOS_JIT_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    wait_for(4434);
    wait_for(4445);
    wait_for(4480);
    // One session: step i's output goes to <dir>/i, its status to <dir>/i.status.
    let outputs = tempfile::tempdir().unwrap();
    let mut script = String::new();
    for (i, (step, _)) in steps.iter().enumerate() {
        let out = outputs.path().join(i.to_string());
        script.push_str(&format!(
            "{{\n{step}}} > '{out}' 2>&1\necho $? > '{out}.status'\n",
            out = out.display()
        ));
    }
    let session = Command::new("bash")
        .args(["-c", &script])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        session.status.success(),
        "{}",
        String::from_utf8_lossy(&session.stderr)
    );
    for (i, (step, expected)) in steps.iter().enumerate() {
        let out = outputs.path().join(i.to_string());
        let output = std::fs::read_to_string(&out).unwrap_or_default();
        let status = std::fs::read_to_string(out.with_extension("status")).unwrap_or_default();
        assert_eq!(status.trim(), "0", "{step}\n{output}");
        assert!(
            output.contains(expected.as_str()),
            "{step}\nexpected {expected} in:\n{output}"
        );
    }
    drop(dev);
}

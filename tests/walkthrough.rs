//! The README's walkthrough, run as written: `kratos-jit serve --dev`, then every command of the
//! walkthrough block through `bash`, each checked against the `# expect:` line that follows it.

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

/// (command, expected fragment of its output), in README order.
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
    let mut command: Option<String> = None;
    for line in readme[start..end].lines() {
        if let Some(expected) = line.strip_prefix("# expect: ") {
            let command = command.take().expect("an expect line follows a command");
            steps.push((command, expected.to_owned()));
        } else if line.starts_with("curl ") {
            assert!(
                command.is_none(),
                "a command without an expect line: {command:?}"
            );
            command = Some(line.to_owned());
        }
    }
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
    wait_for(4480);
    for (command, expected) in steps {
        let out = Command::new("bash")
            .args(["-c", &command])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{command}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&expected),
            "{command}\nexpected {expected} in:\n{stdout}"
        );
    }
    drop(dev);
}

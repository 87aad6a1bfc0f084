//! `at-device` as a command-line tool.

use std::process::{Command, Stdio};

/// `at-device … | head` must not end in a panic report when the reader goes away: the first
/// write to a pipe without readers fails with EPIPE, and the tool exits quietly with status 0.
#[test]
fn a_closed_stdout_ends_the_tool_quietly() -> std::io::Result<()> {
    let dir = std::env::temp_dir().join(format!(
        "at-device-cli-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    let (reader, writer) = std::io::pipe()?;
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_at-device"))
        .args(["setup", "--twin", "t1", "--device", "d1", "--dir"])
        .arg(&dir)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "a panic report: {stderr}");
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    // It did its work before printing: the card is there.
    assert!(
        dir.join("device.json").exists(),
        "no device card in {}",
        dir.display()
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

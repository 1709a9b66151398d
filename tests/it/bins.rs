//! The workspace's other binaries (`testgen`, `sperform-agent`), for the
//! tests that run them. Cargo hands a test only the binaries of its own
//! package (`CARGO_BIN_EXE_*`), so the first test that needs one builds
//! both with the cargo that runs the tests, into the same target directory
//! and profile as this test binary, and every later test reuses them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The path of the `testgen` binary, built for this test run.
pub fn testgen() -> PathBuf {
    built().join(exe("testgen"))
}

/// The path of the `sperform-agent` binary, built for this test run.
pub fn sperform_agent() -> PathBuf {
    built().join(exe("sperform-agent"))
}

/// The directory the binaries are built into; builds them the first time.
fn built() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(build)
}

fn exe(name: &str) -> String {
    format!("{name}{}", std::env::consts::EXE_SUFFIX)
}

/// Where this test binary lives, read from its path:
/// `<target dir>[/<triple>]/<profile dir>/deps/it-<hash>`.
struct Layout {
    target_dir: PathBuf,
    triple: Option<String>,
    profile_dir: PathBuf,
}

fn layout() -> Layout {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lies in <profile>/deps/")
        .to_owned();
    let above = profile_dir
        .parent()
        .expect("the profile directory has a parent")
        .to_owned();
    // The target directory's root holds CACHEDIR.TAG; a directory between it
    // and the profile's is a `--target` triple.
    if above.join("CACHEDIR.TAG").exists() {
        Layout {
            target_dir: above,
            triple: None,
            profile_dir,
        }
    } else {
        let triple = above
            .file_name()
            .map(|name| name.to_string_lossy().into_owned());
        let target_dir = above
            .parent()
            .expect("a triple directory has a parent")
            .to_owned();
        Layout {
            target_dir,
            triple,
            profile_dir,
        }
    }
}

fn build() -> PathBuf {
    let layout = layout();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "build",
            "--locked",
            "--quiet",
            "-p",
            "testgen",
            "-p",
            "sperform-agent",
        ])
        .arg("--target-dir")
        .arg(&layout.target_dir);
    // `debug` is the directory of the dev and test profiles; any other
    // profile's directory bears its name.
    match layout
        .profile_dir
        .file_name()
        .and_then(|name| name.to_str())
    {
        Some("debug") => {}
        Some(profile) => {
            command.args(["--profile", profile]);
        }
        None => panic!("no profile in {}", layout.profile_dir.display()),
    }
    if let Some(triple) = &layout.triple {
        command.args(["--target", triple]);
    }
    let status = command.status().expect("cargo runs");
    assert!(
        status.success(),
        "`cargo build -p testgen -p sperform-agent` failed: {status}"
    );
    layout.profile_dir
}

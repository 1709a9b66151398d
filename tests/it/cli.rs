//! The command line of the real binary: `--version`, `--help` and
//! `check-config`, which reads the configuration as start-up does and
//! touches no database.

use std::process::Output;

use crate::daemon::sperform_command;

/// Runs `sperform` with `args` and extra environment variables in a fresh
/// directory; also returns whether a database file appeared there.
fn sperform(args: &[&str], env: &[(&str, &str)]) -> (Output, bool) {
    let dir = tempfile::tempdir().unwrap();
    let output = sperform_command(dir.path())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let database_created = std::fs::read_dir(dir.path())
        .unwrap()
        .any(|entry| entry.unwrap().file_name().to_string_lossy().contains(".db"));
    (output, database_created)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The value printed for `key` by `check-config`.
fn setting<'a>(printed: &'a str, key: &str) -> &'a str {
    printed
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(' ')?;
            (name == key).then(|| value.trim())
        })
        .unwrap_or_else(|| panic!("no {key} in:\n{printed}"))
}

#[test]
fn version_prints_the_package_version() {
    let (output, _) = sperform(&["--version"], &[]);
    assert!(output.status.success());
    assert_eq!(
        stdout(&output),
        format!("sperform {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_says_what_it_is_and_where_configuration_comes_from() {
    let (output, database_created) = sperform(&["--help"], &[]);
    assert!(output.status.success());
    let help = stdout(&output);
    for expected in [
        "server-load monitor",
        "check-config",
        "Rocket.toml",
        "ROCKET_CONFIG",
        "ROCKET_<KEY>",
        "ROCKET_PROFILE",
        "shutdown.grace",
        "synchronous",
        "ingest_token",
        "read_token",
    ] {
        assert!(help.contains(expected), "{expected:?} missing:\n{help}");
    }
    assert!(!database_created);
}

#[test]
fn check_config_prints_the_settings_in_force_without_secrets() {
    let token = "a-secret-token-0123456789";
    let (output, database_created) = sperform(
        &["check-config"],
        &[
            ("ROCKET_PORT", "9123"),
            ("ROCKET_DATABASE", "/var/lib/sperform/sperform.db"),
            ("ROCKET_SYNCHRONOUS", "full"),
            ("ROCKET_SHUTDOWN", "{grace=7}"),
            ("ROCKET_INGEST_TOKEN", token),
        ],
    );
    let printed = stdout(&output);
    assert!(output.status.success(), "{printed}{}", stderr(&output));
    assert_eq!(setting(&printed, "port"), "9123");
    assert_eq!(setting(&printed, "address"), "127.0.0.1");
    assert_eq!(
        setting(&printed, "database"),
        "/var/lib/sperform/sperform.db"
    );
    assert_eq!(setting(&printed, "synchronous"), "full");
    assert_eq!(setting(&printed, "shutdown.grace"), "7s");
    assert_eq!(setting(&printed, "shutdown.mercy"), "3s");
    assert_eq!(setting(&printed, "retention"), "7days");
    assert_eq!(setting(&printed, "history_retention"), "400days");
    assert_eq!(setting(&printed, "retention_size"), "no limit");
    assert_eq!(setting(&printed, "ingest_token"), "set");
    assert_eq!(setting(&printed, "read_token"), "not set");
    assert!(!printed.contains(token), "{printed}");
    assert!(!database_created);
}

#[test]
fn check_config_reads_the_file_rocket_config_names_and_the_profile() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sperform.toml");
    std::fs::write(
        &file,
        "[default]\nport = 7001\nretention = \"36h\"\nretention_size = \"512MB\"\n\
         [release]\nport = 7002\nlog_level = \"critical\"\n\
         [debug]\nport = 7003\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    for (profile, port) in [("release", "7002"), ("debug", "7003")] {
        let (output, _) = sperform(
            &["check-config"],
            &[("ROCKET_CONFIG", file), ("ROCKET_PROFILE", profile)],
        );
        let printed = stdout(&output);
        assert!(output.status.success(), "{printed}{}", stderr(&output));
        assert_eq!(setting(&printed, "profile"), profile);
        assert_eq!(setting(&printed, "port"), port);
        assert_eq!(setting(&printed, "retention"), "1day 12h");
        assert_eq!(setting(&printed, "retention_size"), "512MB");
    }
}

#[test]
fn check_config_fails_naming_the_bad_key() {
    for (key, value, expected) in [
        ("ROCKET_RETENTION", "soon", "RETENTION"),
        ("ROCKET_READ_POOL_SIZE", "0", "`read_pool_size`"),
        ("ROCKET_RETENTION_SIZE", "lots", "RETENTION_SIZE"),
        ("ROCKET_HISTORY_RETENTION", "2d", "`history_retention`"),
        ("ROCKET_READ_TOKEN", "short", "`read_token`"),
        ("ROCKET_PORT", "http", "PORT"),
        ("ROCKET_SHUTDOWN", "{grace=\"long\"}", "SHUTDOWN.GRACE"),
    ] {
        let (output, database_created) = sperform(&["check-config"], &[(key, value)]);
        assert_eq!(output.status.code(), Some(1), "{key}={value}");
        let message = stderr(&output);
        assert!(
            message.starts_with("sperform: configuration error: ") && message.contains(expected),
            "{key}={value}: {message}"
        );
        assert!(stdout(&output).is_empty());
        assert!(!database_created);
    }
}

#[test]
fn the_daemon_refuses_to_start_on_the_same_errors() {
    let (output, database_created) = sperform(&[], &[("ROCKET_WORKERS", "many")]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.starts_with("sperform: configuration error: ") && message.contains("WORKERS"),
        "{message}"
    );
    assert!(!database_created);
}

#[test]
fn an_unknown_command_is_a_usage_error() {
    let (output, database_created) = sperform(&["check-everything"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("check-everything"));
    assert!(!database_created);
}

#[test]
fn the_packaged_config_and_the_unit_environment_pass_check_config() {
    let packaging = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging");
    let unit = std::fs::read_to_string(packaging.join("sperform.service")).unwrap();
    let mut env: Vec<(String, String)> = unit
        .lines()
        .filter_map(|line| line.strip_prefix("Environment="))
        .map(|assignment| {
            let (key, value) = assignment.split_once('=').unwrap();
            (key.to_owned(), value.to_owned())
        })
        .collect();
    assert!(env.iter().any(|(key, _)| key == "ROCKET_CONFIG"), "{unit}");
    // The example file in place of /etc/sperform/Rocket.toml.
    for (key, value) in &mut env {
        if key == "ROCKET_CONFIG" {
            *value = packaging.join("Rocket.toml").to_string_lossy().into_owned();
        }
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (output, database_created) = sperform(&["check-config"], &env);
    let printed = stdout(&output);
    assert!(output.status.success(), "{printed}{}", stderr(&output));
    assert_eq!(setting(&printed, "address"), "0.0.0.0");
    assert_eq!(setting(&printed, "log_level"), "critical");
    assert_eq!(
        setting(&printed, "database"),
        "/var/lib/sperform/sperform.db"
    );
    assert!(!database_created);
}

//! The command line itself: `--help` everywhere with an example and the exit codes, usage
//! errors exit 2.

use std::process::Command;

fn polymux(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_polymux"))
        .args(args)
        .env_remove("POLYMUX_TOKEN")
        .output()
        .expect("run polymux")
}

#[test]
fn every_subcommand_has_help_with_an_example_and_exit_codes() {
    for path in [
        &[][..],
        &["tunnel"],
        &["tunnel", "server"],
        &["tunnel", "client"],
        &["forward"],
        &["forward", "server"],
        &["forward", "client"],
        &["echo"],
        &["bench"],
    ] {
        let mut args = path.to_vec();
        args.push("--help");
        let out = polymux(&args);
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{path:?} --help failed");
        assert!(
            help.contains("xample"),
            "{path:?} --help has an example:\n{help}"
        );
        assert!(
            help.contains("Exit codes:"),
            "{path:?} --help lists exit codes:\n{help}"
        );
        assert!(help.contains("polymux"), "{path:?}");
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["frobnicate"][..],
        &["--protocol", "smux3", "echo", "--listen", "127.0.0.1:0"],
        &["tunnel", "server", "--listen", "127.0.0.1:0"],
        &[
            "forward",
            "client",
            "--listen",
            "nonsense",
            "--server",
            "127.0.0.1:1",
        ],
        &[
            "echo",
            "--listen",
            "127.0.0.1:0",
            "--shutdown-timeout",
            "soon",
        ],
        &[
            "tunnel",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--expose",
            "127.0.0.1:0",
            "--tls-cert",
            "c.pem",
        ],
    ] {
        let out = polymux(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn unreadable_tls_files_are_configuration_errors() {
    let out = polymux(&[
        "forward",
        "server",
        "--listen",
        "127.0.0.1:0",
        "--target",
        "127.0.0.1:9",
        "--token",
        "0123456789abcdef0123",
        "--tls-cert",
        "/nonexistent/cert.pem",
        "--tls-key",
        "/nonexistent/key.pem",
    ]);
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/cert.pem") && stderr.contains("--tls-cert"),
        "{stderr}"
    );
}

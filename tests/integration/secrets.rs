//! Passwords set in the URLs never show: not in `guichet --help` (which
//! otherwise prints each variable's current value), not in `Debug` output.

#[test]
fn guichet_help_shows_no_password_set_in_a_url() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_guichet"))
        .arg("--help")
        .env(
            "GUICHET_DATABASE_URL",
            "postgres://guichet:db-pw-4417@db/guichet",
        )
        .env("GUICHET_AMQP_URL", "amqp://svc:amqp-pw-4417@rabbit/guichet")
        .env("GUICHET_SMTP_URL", "smtp://mail:smtp-pw-4417@relay:587")
        .env(
            "GUICHET_FORM_SIGNING_KEY",
            "form-key-4417-form-key-4417-form-key",
        )
        .env("GUICHET_AMQP_USER_INTAKE_WEB", "guichet-intake-web")
        .env("GUICHET_AMQP_PASSWORD_INTAKE_WEB", "web-pw-4417")
        .env("GUICHET_AMQP_PASSWORD_INSTRUCTION", "instruction-pw-4417")
        .output()
        .expect("guichet --help runs");
    assert!(output.status.success(), "{output:?}");
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("GUICHET_DATABASE_URL"), "{help}");
    assert!(help.contains("GUICHET_AMQP_PASSWORD_INTAKE_WEB"), "{help}");
    for secret in [
        "db-pw-4417",
        "amqp-pw-4417",
        "smtp-pw-4417",
        "form-key-4417",
        "web-pw-4417",
        "instruction-pw-4417",
    ] {
        assert!(!help.contains(secret), "{secret} shown in:\n{help}");
    }
}

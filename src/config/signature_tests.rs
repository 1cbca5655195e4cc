//! `compile_signature` and `secret_text`: every configuration error of a
//! `signature` section, with its field path.

use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn path() -> FieldPath {
    FieldPath::root().key("channels").index(0).key("signature")
}

fn spec(json: &str) -> SignatureSpec {
    serde_json::from_str(json).unwrap()
}

fn compile_err(json: &str) -> String {
    compile_signature(&spec(json), &path(), &|_| None)
        .map(|v| format!("unexpectedly compiled: {v:?}"))
        .unwrap_or_else(|e| e.to_string())
}

/// The error of a whole document with this `signature` on its channel 0
/// (for the checks serde makes).
fn load_err(signature: &str) -> String {
    let doc = format!(
        r#"{{"channels":[{{"name":"a","match":{{"path_prefix":"/"}},"signature":{signature}}}]}}"#
    );
    super::super::load(doc.as_bytes(), &|_| None)
        .map(|p| format!("unexpectedly loaded: {p:?}"))
        .unwrap_or_else(|e| e.to_string())
}

#[test]
fn unknown_scheme_is_refused_with_its_path() {
    // A serde enum: serde's message, at the field's path, listing the
    // schemes.
    let e = load_err(r#"{"scheme":"paypal","secrets":[{"value":"x"}]}"#);
    assert!(
        e.starts_with("channels[0].signature.scheme: unknown variant `paypal`, expected one of `standard-webhooks`, `svix`, `stripe`, `github`, `slack`, `shopify`, `hmac`"),
        "{e}"
    );
}

#[test]
fn schemes_need_keys() {
    for scheme in ["stripe", "github", "slack", "shopify"] {
        let e = compile_err(&format!(r#"{{"scheme":"{scheme}"}}"#));
        assert_eq!(
            e,
            "channels[0].signature.secrets: needs at least one secret"
        );
    }
    let e = compile_err(r#"{"scheme":"svix"}"#);
    assert_eq!(
        e,
        "channels[0].signature.secrets: needs at least one secret or public key"
    );
}

#[test]
fn fields_that_do_not_apply_are_refused() {
    let e = compile_err(r#"{"scheme":"stripe","secrets":[{"value":"x"}],"header":"x-sig"}"#);
    assert!(
        e.starts_with("channels[0].signature.header: only applies to scheme \"hmac\""),
        "{e}"
    );
    let e = compile_err(
        r#"{"scheme":"github","secrets":[{"value":"x"}],
            "public_keys":["whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g="]}"#,
    );
    assert!(
        e.starts_with("channels[0].signature.public_keys: scheme \"github\" has no asymmetric"),
        "{e}"
    );
    let e = compile_err(r#"{"scheme":"shopify","secrets":[{"value":"x"}],"tolerance_s":60}"#);
    assert!(
        e.starts_with("channels[0].signature.tolerance_s: scheme \"shopify\" signs no timestamp"),
        "{e}"
    );
    let e = compile_err(r#"{"scheme":"stripe","secrets":[{"value":"x"}],"tolerance_s":0}"#);
    assert_eq!(
        e,
        "channels[0].signature.tolerance_s: must be between 1 and 3600 seconds, got 0"
    );
    for t in ["3601", "18446744073709551615"] {
        let e = compile_err(&format!(
            r#"{{"scheme":"stripe","secrets":[{{"value":"x"}}],"tolerance_s":{t}}}"#
        ));
        assert!(
            e.starts_with("channels[0].signature.tolerance_s: must be between 1 and 3600"),
            "{e}"
        );
    }
    // Negative, fractional and out-of-u64 values fail in serde, with the path.
    for t in ["-1", "1.5", "1e400"] {
        let doc = format!(
            r#"{{"channels":[{{"name":"a","match":{{"path_prefix":"/"}},
                "signature":{{"scheme":"stripe","secrets":[{{"value":"x"}}],"tolerance_s":{t}}}}}]}}"#
        );
        let e = super::super::load(doc.as_bytes(), &|_| None).unwrap_err();
        assert_eq!(e.path, "channels[0].signature.tolerance_s", "{t}: {e}");
    }
}

#[test]
fn secret_errors_carry_the_item_path() {
    let e = compile_err(
        r#"{"scheme":"standard-webhooks","secrets":[{"value":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},{"env":"PAYMENTS_SECRET"}]}"#,
    );
    assert_eq!(
        e,
        "channels[0].signature.secrets[1]: env var PAYMENTS_SECRET is not set"
    );
    let e = compile_err(r#"{"scheme":"stripe","secrets":[{"value":"a","env":"B"}]}"#);
    assert_eq!(
        e,
        "channels[0].signature.secrets[0]: give either `value` or `env`, not both"
    );
    let e = compile_err(r#"{"scheme":"stripe","secrets":[{}]}"#);
    assert_eq!(
        e,
        "channels[0].signature.secrets[0]: needs `value` or `env`"
    );
}

#[test]
fn too_many_keys_are_refused() {
    let many = [r#"{"value":"k"}"#; MAX_KEYS + 1].join(",");
    let e = compile_err(&format!(r#"{{"scheme":"github","secrets":[{many}]}}"#));
    assert!(e.contains("secrets: at most 8 secrets"), "{e}");
}

#[test]
fn debug_and_errors_never_show_secrets() {
    let env = |_: &str| Some("whsec_ZW52LXNlY3JldC1ieXRlcw==".to_string());
    let v = compile_signature(
        &spec(r#"{"scheme":"svix","secrets":[{"value":"whsec_c3VwZXItc2VjcmV0LWJ5dGVz"},{"env":"E"}]}"#),
        &path(),
        &env,
    )
    .unwrap();
    let shown = format!("{v:?}");
    for needle in ["c3VwZXI", "ZW52LX", "super", "env-secret"] {
        assert!(!shown.contains(needle), "{shown}");
    }
    assert!(
        shown.contains("<redacted>") && shown.contains("svix"),
        "{shown}"
    );

    let e = compile_err(r#"{"scheme":"svix","secrets":[{"value":"whsec_sup3r$ecret!"}]}"#);
    assert!(!e.contains("sup3r"), "{e}");
    assert!(e.starts_with("channels[0].signature.secrets[0]: "), "{e}");
}

#[test]
fn hmac_config_errors() {
    let base = r#""scheme":"hmac","secrets":[{"value":"k"}]"#;
    let e = compile_err(&format!("{{{base}}}"));
    assert_eq!(
        e,
        "channels[0].signature.header: is required for scheme \"hmac\""
    );
    let e = compile_err(&format!(r#"{{{base},"header":"x sig"}}"#));
    assert_eq!(
        e,
        "channels[0].signature.header: \"x sig\" is not a header name"
    );
    // `algorithm` and `encoding` are serde enums: serde's message at the
    // field's path.
    let e = load_err(&format!(r#"{{{base},"header":"x-sig","algorithm":"md5"}}"#));
    assert_eq!(
        e,
        "channels[0].signature.algorithm: unknown variant `md5`, expected one of `sha1`, `sha256`, `sha512`"
    );
    let e = load_err(&format!(
        r#"{{{base},"header":"x-sig","encoding":"base32"}}"#
    ));
    assert_eq!(
        e,
        "channels[0].signature.encoding: unknown variant `base32`, expected `hex` or `base64`"
    );
    let e = compile_err(&format!(r#"{{{base},"header":"x-sig","prefix":""}}"#));
    assert_eq!(
        e,
        "channels[0].signature.prefix: must not be empty when given"
    );
    let e = compile_err(r#"{"scheme":"hmac","header":"x-sig"}"#);
    assert_eq!(
        e,
        "channels[0].signature.secrets: needs at least one secret"
    );
}

#[test]
fn key_config_errors() {
    let e = compile_err(r#"{"scheme":"standard-webhooks","secrets":[{"value":"whsec_%%%"}]}"#);
    assert!(
        e.starts_with("channels[0].signature.secrets[0]: is not a whsec_ secret"),
        "{e}"
    );
    let e = compile_err(
        r#"{"scheme":"standard-webhooks","public_keys":["whsk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g="]}"#,
    );
    assert_eq!(
        e,
        "channels[0].signature.public_keys[0]: must start with `whpk_`"
    );
    let e = compile_err(r#"{"scheme":"standard-webhooks","public_keys":["whpk_AAAA"]}"#);
    assert!(
        e.starts_with("channels[0].signature.public_keys[0]: must be `whpk_` + base64"),
        "{e}"
    );
}

#[test]
fn compiled_verifiers_verify() {
    // GitHub's documented example, through the configuration.
    let v = compile_signature(
        &spec(r#"{"scheme":"github","secrets":[{"value":"It's a Secret to Everybody"}]}"#),
        &path(),
        &|_| None,
    )
    .unwrap();
    let headers: crate::core::headers::Headers = [(
        "X-Hub-Signature-256",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
    )]
    .into_iter()
    .collect();
    assert_eq!(v.verify(&headers, b"Hello, World!", 0), Ok(()));
    assert_eq!(v.scheme(), "github");
    // `hmac` with an upper-case header name, sha1, base64 and a prefix
    // (RFC 2202 test case 2).
    let v = compile_signature(
        &spec(
            r#"{"scheme":"hmac","secrets":[{"value":"Jefe"}],"header":"X-Sig","algorithm":"sha1","encoding":"base64","prefix":"sha1="}"#,
        ),
        &path(),
        &|_| None,
    )
    .unwrap();
    let headers: crate::core::headers::Headers = [("x-sig", "sha1=7/zfauXrL6LSdBbV8YTfnCWafHk=")]
        .into_iter()
        .collect();
    assert_eq!(
        v.verify(&headers, b"what do ya want for nothing?", 0),
        Ok(())
    );
    // Standard Webhooks keys with the decoded whsec_ bytes (reference vector).
    let v = compile_signature(
        &spec(r#"{"scheme":"standard-webhooks","secrets":[{"value":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}]}"#),
        &path(),
        &|_| None,
    )
    .unwrap();
    let headers: crate::core::headers::Headers = [
        ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
        ("webhook-timestamp", "1614265330"),
        (
            "webhook-signature",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        v.verify(&headers, br#"{"test": 2432232314}"#, 1_614_265_330),
        Ok(())
    );
}

fn secret(value: Option<&str>, env: Option<&str>) -> SecretSpec {
    SecretSpec {
        value: value.map(str::to_string),
        env: env.map(str::to_string),
    }
}

fn secret_path() -> FieldPath {
    path().key("secrets").index(1)
}

#[test]
fn secret_from_value_or_env() {
    let env = |name: &str| (name == "PAYMENTS_SECRET").then(|| "s3cr3t".to_string());
    assert_eq!(
        secret_text(&secret(Some("abc"), None), &secret_path(), &env).unwrap(),
        "abc"
    );
    assert_eq!(
        secret_text(&secret(None, Some("PAYMENTS_SECRET")), &secret_path(), &env).unwrap(),
        "s3cr3t"
    );
}

#[test]
fn secret_errors_name_the_field_never_the_secret() {
    let env = |name: &str| match name {
        "EMPTY" => Some(String::new()),
        "NEWLINE" => Some("s3cr3t-value\n".to_string()),
        _ => None,
    };
    let err = |s: SecretSpec| {
        secret_text(&s, &secret_path(), &env)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(secret(None, Some("PAYMENTS_SECRET"))),
        "channels[0].signature.secrets[1]: env var PAYMENTS_SECRET is not set"
    );
    assert!(err(secret(None, Some("EMPTY"))).ends_with("env var EMPTY is empty"));
    assert!(err(secret(Some("a"), Some("B"))).contains("not both"));
    assert!(err(secret(None, None)).contains("needs `value` or `env`"));
    assert!(err(secret(Some(""), None)).contains("secrets[1].value: must not be empty"));
    let e = err(secret(None, Some("NEWLINE")));
    assert!(e.contains("whitespace") && !e.contains("s3cr3t"), "{e}");
    let e = err(secret(Some(" s3cr3t-value"), None));
    assert!(e.contains("whitespace") && !e.contains("s3cr3t"), "{e}");
}

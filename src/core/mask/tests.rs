//! Masker tests: configuration, selection, detection, strategies, JSON
//! validation, depth, and properties over generated documents.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

/// A masker from a `mask`-shaped JSON description, through the typed
/// constructors (no configuration layer; its checks and error paths are
/// tested in `config::mask`). Panics on anything it does not understand.
fn masker(spec: serde_json::Value) -> Masker {
    let fields: Vec<String> = serde_json::from_value(spec["fields"].clone()).unwrap_or_default();
    let detectors: Vec<Detector> =
        serde_json::from_value(spec["detectors"].clone()).unwrap_or_default();
    let strategy: StrategyName = match &spec["strategy"] {
        serde_json::Value::Null => StrategyName::Redact,
        s => serde_json::from_value(s.clone()).unwrap(),
    };
    let hash_key = match &spec["hash_key"] {
        serde_json::Value::Null => None,
        k if k["env"] == "MASK_HASH_KEY" => Some(HASH_KEY.to_string()),
        k => Some(k["value"].as_str().unwrap().to_string()),
    };
    let m = Masker::new(&fields, spec["case_sensitive"].as_bool().unwrap_or(false))
        .unwrap()
        .with_detectors(&detectors)
        .with_strategy(
            strategy,
            spec["replacement"].as_str(),
            hash_key.as_deref().map(str::as_bytes),
        )
        .unwrap();
    let m = match spec["max_depth"].as_u64() {
        Some(d) => m.with_max_depth(usize::try_from(d).unwrap()),
        None => m,
    };
    assert!(!m.is_empty(), "nothing to mask: {spec}");
    m
}

/// The `hash_key` the tests use (also via `{"env": "MASK_HASH_KEY"}`).
const HASH_KEY: &str = "test-hash-key-0123456789";

/// Masks `input`, checks the output is JSON, returns it with the count.
fn run(m: &Masker, input: &str) -> (String, u64) {
    let masked = m
        .mask(input.as_bytes())
        .unwrap_or_else(|e| panic!("{e}: {input}"));
    let out = String::from_utf8(masked.body).unwrap();
    serde_json::from_str::<serde_json::Value>(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    (out, masked.count)
}

/// What strategy `hash` writes for `s` under [`HASH_KEY`].
fn hmac_hex(key: &str, s: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(s.as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("hmac-sha256:{}", &hex[..32])
}

fn sha(s: &str) -> String {
    hmac_hex(HASH_KEY, s)
}

#[test]
fn masks_selected_fields() {
    let spec =
        json!({"fields": ["phone", "id", "customer.email", "items[*].card_number", "[*].root"]});
    let m = masker(spec);
    let cases: &[(&str, &str, &str, u64)] = &[
        (
            "nested object",
            r#"{"customer":{"email":"a@b.io","name":"Ann"}}"#,
            r#"{"customer":{"email":"***","name":"Ann"}}"#,
            1,
        ),
        (
            "path is anchored at the root",
            r#"{"email":"a","x":{"customer":{"email":"b"}}}"#,
            r#"{"email":"a","x":{"customer":{"email":"b"}}}"#,
            0,
        ),
        (
            "arrays of objects, wildcard",
            r#"{"items":[{"card_number":"4111","sku":"A"},{"sku":"B"},{"card_number":"5555"}],"card_number":"keep"}"#,
            r#"{"items":[{"card_number":"***","sku":"A"},{"sku":"B"},{"card_number":"***"}],"card_number":"keep"}"#,
            2,
        ),
        (
            "wildcard needs an array",
            r#"{"items":{"card_number":"x"}}"#,
            r#"{"items":{"card_number":"x"}}"#,
            0,
        ),
        (
            "key at several depths",
            r#"{"phone":"1","a":{"phone":"2","b":[{"phone":"3"},[{"phone":"4"}]]}}"#,
            r#"{"phone":"***","a":{"phone":"***","b":[{"phone":"***"},[{"phone":"***"}]]}}"#,
            4,
        ),
        (
            "non-string values",
            r#"{"id":12345,"phone":true,"x":{"id":null},"y":{"id":{"a":[1,2]}},"z":{"id":[1,{"b":2}]},"w":{"id":-1.5e10}}"#,
            r#"{"id":"***","phone":"***","x":{"id":"***"},"y":{"id":"***"},"z":{"id":"***"},"w":{"id":"***"}}"#,
            6,
        ),
        (
            "masked once, not per descendant",
            r#"{"id":{"phone":"x","id":"y"}}"#,
            r#"{"id":"***"}"#,
            1,
        ),
        (
            "root array paths",
            r#"[{"root":1},{"root":[2]},{"other":3}]"#,
            r#"[{"root":"***"},{"root":"***"},{"other":3}]"#,
            2,
        ),
        (
            "empty containers",
            r#"{"a":[],"b":{},"id":[],"phone":{}}"#,
            r#"{"a":[],"b":{},"id":"***","phone":"***"}"#,
            2,
        ),
        ("root scalar", "42", "42", 0),
        ("root string", r#""phone""#, r#""phone""#, 0),
        (
            "escaped key",
            r#"{"ph\u006fne":"x","cust\u006fmer":{"em\u0061il":"y"}}"#,
            r#"{"ph\u006fne":"***","cust\u006fmer":{"em\u0061il":"***"}}"#,
            2,
        ),
        (
            "escaped value",
            r#"{"phone":"\u0031\n\"x\""}"#,
            r#"{"phone":"***"}"#,
            1,
        ),
        (
            "whitespace and order kept",
            "{\n  \"z\" : 1 ,\n  \"phone\"\t:\t\"x\" ,\r\n  \"a\" : [ 1 , 2 ]\n}\n",
            "{\n  \"z\" : 1 ,\n  \"phone\"\t:\t\"***\" ,\r\n  \"a\" : [ 1 , 2 ]\n}\n",
            1,
        ),
        (
            "numbers as written",
            r#"{"big":123456789012345678901234567890123456789012345678901234567890,"f":-0.0e-0,"e":1E+400,"p":1.000000000000000000001,"id":1e999}"#,
            r#"{"big":123456789012345678901234567890123456789012345678901234567890,"f":-0.0e-0,"e":1E+400,"p":1.000000000000000000001,"id":"***"}"#,
            1,
        ),
        (
            "unicode kept",
            r#"{"名字":"张三","emoji":"😀\ud83d\ude00","esc":"\u00e9\/\b"}"#,
            r#"{"名字":"张三","emoji":"😀\ud83d\ude00","esc":"\u00e9\/\b"}"#,
            0,
        ),
    ];
    for (name, input, want, count) in cases {
        // Numbers beyond f64 are valid JSON but serde_json refuses them.
        let masked = m
            .mask(input.as_bytes())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(String::from_utf8(masked.body).unwrap(), *want, "{name}");
        assert_eq!(masked.count, *count, "{name}");
    }
}

#[test]
fn detectors_mask_substrings() {
    let m = masker(json!({"detectors": ["email", "phone", "card", "cn_id"], "fields": ["secret"]}));
    let cases: &[(&str, &str, &str, u64)] = &[
        (
            "free text",
            r#"{"note":"call me at +8613812345678 tomorrow"}"#,
            r#"{"note":"call me at *** tomorrow"}"#,
            1,
        ),
        (
            "whole value",
            r#"{"contact":"john@example.com"}"#,
            r#"{"contact":"***"}"#,
            1,
        ),
        (
            "several in one string",
            r#"["a@b.io or 13812345678, card 4111 1111 1111 1111, id 11010519491231002X"]"#,
            r#"["*** or ***, card ***, id ***"]"#,
            4,
        ),
        (
            "unselected keys and arrays",
            r#"{"a":{"b":["x","13912345678"]}}"#,
            r#"{"a":{"b":["x","***"]}}"#,
            1,
        ),
        (
            "chinese text",
            r#"{"备注":"电话：13812345678，谢谢"}"#,
            r#"{"备注":"电话：***，谢谢"}"#,
            1,
        ),
        (
            "escapes around the finding",
            r#"{"n":"\u00e9\n +8613812345678 \"ok\"\t"}"#,
            r#"{"n":"\u00e9\n *** \"ok\"\t"}"#,
            1,
        ),
        (
            "escapes inside the finding",
            r#"{"n":"mail john\u0040example.com\/x"}"#,
            r#"{"n":"mail ***\/x"}"#,
            1,
        ),
        (
            "escaped digits",
            r#"{"n":"\u0034111111111111111"}"#,
            r#"{"n":"***"}"#,
            1,
        ),
        (
            "surrogate pair next to it",
            r#"{"n":"\ud83d\ude00 13812345678"}"#,
            r#"{"n":"\ud83d\ude00 ***"}"#,
            1,
        ),
        (
            "keys are not rewritten",
            r#"{"a@b.io":"x"}"#,
            r#"{"a@b.io":"x"}"#,
            0,
        ),
        (
            "PII written as a number becomes a string",
            r#"{"n":13812345678,"c":[4111111111111111, -13812345678],"e":1.3812345678E+10}"#,
            r#"{"n":"***","c":["***", "***"],"e":"***"}"#,
            4,
        ),
        (
            "other numbers stay as written",
            r#"{"ts":1700000000,"amt":13812345678.5,"luhn":4111111111111112,"f":1.3812345678e-3,"z":-0.0e5}"#,
            r#"{"ts":1700000000,"amt":13812345678.5,"luhn":4111111111111112,"f":1.3812345678e-3,"z":-0.0e5}"#,
            0,
        ),
        (
            "field wins over detectors",
            r#"{"secret":"a@b.io c@d.io"}"#,
            r#"{"secret":"***"}"#,
            1,
        ),
    ];
    for (name, input, want, count) in cases {
        assert_eq!(run(&m, input), (want.to_string(), *count), "{name}");
    }
}

#[test]
fn detectors_inside_long_text() {
    let m = masker(json!({"detectors": ["email", "phone", "card", "cn_id"]}));
    let filler = "lorem ipsum dolor sit amet, order 2024-05-15 ref #A17 at 10:30; ".repeat(200);
    let input =
        json!({"text": format!("{filler}card 5555-5555-5555-4444 {filler}mail a.b@c.io {filler}")})
            .to_string();
    let want = json!({"text": format!("{filler}card *** {filler}mail *** {filler}")}).to_string();
    assert_eq!(run(&m, &input), (want, 2));
}

#[test]
fn near_misses_are_kept() {
    let m = masker(json!({"detectors": ["email", "phone", "card", "cn_id"]}));
    for value in [
        "4111 1111 1111 1112",
        "order 4111111111111112",
        "110105194912310022",
        "11010519491231002Y",
        "1715760000",
        "ts 1715760000123",
        "2024-05-15",
        "2024-05-15T10:20:30Z",
        "20240515123456789",
        "ORD-20240515-0001",
        "trace 4bf92f3577b34da6a3ce929d0e0e4736",
        "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
        "user@localhost",
        "1.5e10",
        "+1 2",
    ] {
        let input = json!({ "v": value }).to_string();
        assert_eq!(run(&m, &input), (input.clone(), 0), "{value}");
    }
}

#[test]
fn strategies() {
    let partial = masker(
        json!({"fields": ["phone", "o", "b", "n"], "detectors": ["card"], "strategy": "partial"}),
    );
    assert_eq!(
        run(&partial, r#"{"phone":"13812345678","o":{"x":1},"b":false,"n":12345678901,"t":"pan 4111111111111111."}"#),
        (r#"{"phone":"*******5678","o":"****","b":"*****","n":"*******8901","t":"pan ************1111."}"#.to_string(), 5)
    );
    assert_eq!(run(&partial, r#"{"phone":"12"}"#).0, r#"{"phone":"**"}"#);
    assert_eq!(
        run(&partial, r#"{"phone":"ab\"cdefg\\h"}"#).0,
        r#"{"phone":"******fg\\h"}"#
    );

    let hash = masker(
        json!({"fields": ["phone", "o"], "detectors": ["email"], "strategy": "hash",
                      "hash_key": {"value": HASH_KEY}}),
    );
    let (out, count) = run(
        &hash,
        r#"{"phone":"138\u0031","o":{ "x" : [1, 2] },"t":"to a@b.io!"}"#,
    );
    let want = format!(
        r#"{{"phone":"{}","o":"{}","t":"to {}!"}}"#,
        sha("1381"),
        sha(r#"{ "x" : [1, 2] }"#),
        sha("a@b.io")
    );
    assert_eq!((out, count), (want, 3));

    let custom = masker(json!({"fields": ["phone"], "replacement": "<\"redacted\">\u{1}"}));
    assert_eq!(
        run(&custom, r#"{"phone":1}"#).0,
        r#"{"phone":"<\"redacted\">\u0001"}"#
    );
    let empty = masker(json!({"fields": ["phone"], "replacement": ""}));
    assert_eq!(run(&empty, r#"{"phone":1}"#).0, r#"{"phone":""}"#);
}

#[test]
fn rejects_bad_json() {
    let m = masker(json!({"fields": ["phone"], "detectors": ["email"]}));
    let cases: &[&[u8]] = &[
        b"",
        b"   ",
        b"{",
        br#"{"a":1"#,
        br#"{"a":"x"#,
        br#"{"a":1,}"#,
        b"[1,2,]",
        b"[,1]",
        br#"{"a" 1}"#,
        br#"{"a":}"#,
        br#"{a:1}"#,
        br#"{"a":1}}"#,
        br#"{"a":1} x"#,
        b"[1] [2]",
        b"\"a\tb\"",
        b"\"a\nb\"",
        b"\"\x00\"",
        br#""\ud800""#,
        br#""\udc00""#,
        br#""\ud800\u0041""#,
        br#""\ud800x""#,
        br#""\u12""#,
        br#""\x""#,
        br#""\"#,
        b"01",
        b"1.",
        b".5",
        b"-",
        b"1e",
        b"1e+",
        b"+1",
        b"0x10",
        b"NaN",
        b"Infinity",
        b"tru",
        b"nulll",
        b"True",
        b"\xef\xbb\xbf{}",
        b"\"\xff\"",
        b"\"\xc3\"",
        b"{\"a\":\"\xed\xa0\x80\"}",
        b"'a'",
        br#"{"phone":[1,}"#,
        br#"{"phone":{"a" 1}}"#,
        br#"{"phone":"\ud800"}"#,
        br#"{"phone":01}"#,
        br#"{"x":"a@b.io\q"}"#,
    ];
    for input in cases {
        assert_eq!(
            m.mask(input),
            Err(MaskError::BadJson),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn depth_limit() {
    let m = masker(json!({"fields": ["phone"]}));
    let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    assert!(m.mask(nested(DEFAULT_MAX_DEPTH).as_bytes()).is_ok());
    assert_eq!(
        m.mask(nested(DEFAULT_MAX_DEPTH + 1).as_bytes()),
        Err(MaskError::TooDeep)
    );
    // Inside a value masked whole, too.
    let inner = |n: usize| format!("{{\"phone\":{}}}", nested(n));
    assert!(m.mask(inner(DEFAULT_MAX_DEPTH - 1).as_bytes()).is_ok());
    assert_eq!(
        m.mask(inner(DEFAULT_MAX_DEPTH).as_bytes()),
        Err(MaskError::TooDeep)
    );
    // Objects count the same; the error comes before the missing closers.
    let objects = "{\"a\":".repeat(DEFAULT_MAX_DEPTH + 1);
    assert_eq!(m.mask(objects.as_bytes()), Err(MaskError::TooDeep));
    // Far deeper than any stack would take.
    assert_eq!(
        m.mask("[".repeat(1 << 20).as_bytes()),
        Err(MaskError::TooDeep)
    );

    let shallow = masker(json!({"fields": ["phone"], "max_depth": 2}));
    assert_eq!(shallow.max_depth(), 2);
    assert!(shallow.mask(br#"{"a":[1]}"#).is_ok());
    assert_eq!(shallow.mask(br#"{"a":[[1]]}"#), Err(MaskError::TooDeep));
}

#[test]
fn compiles_spec_example() {
    let m = masker(json!({
        "fields": ["phone", "id", "customer.email", "items[*].card_number"],
        "detectors": ["email", "phone", "card", "cn_id"],
        "strategy": "redact",
        "replacement": "***"
    }));
    assert_eq!(m.max_depth(), DEFAULT_MAX_DEPTH);
    for strategy in ["redact", "partial"] {
        masker(json!({"fields": ["a"], "strategy": strategy}));
    }
    masker(json!({"fields": ["a"], "strategy": "hash", "hash_key": {"env": "MASK_HASH_KEY"}}));
}

#[test]
fn content_types() {
    let cases = [
        (Some("application/json"), true),
        (Some("Application/JSON; charset=utf-8"), true),
        (Some(" application/json ;charset=UTF-8"), true),
        (Some("application/cloudevents+json"), true),
        (Some("application/vnd.api+JSON; ext=bulk"), true),
        (Some("text/json"), true),
        (Some("TEXT/JSON; charset=utf-8"), true),
        (Some("application/x-json"), true),
        (Some("Application/X-JSON;v=1"), true),
        (Some("text/x-json"), true),
        (Some("text/plain+json"), true),
        (Some("application/json-seq"), false),
        (Some("text/jsonx"), false),
        (Some("application/x-jsonl"), false),
        (Some("application/jsonx"), false),
        (Some("text/plain"), false),
        (Some("application/x-www-form-urlencoded"), false),
        (Some("+json"), false),
        (Some(""), false),
        (None, false),
    ];
    for (ct, want) in cases {
        assert_eq!(Masker::applies_to(ct), want, "{ct:?}");
    }
}

#[test]
fn nothing_leaks_through_debug_or_errors() {
    let m = masker(json!({"fields": ["phone"], "detectors": ["email"]}));
    let masked = m.mask(br#"{"phone":"13812345678","m":"a@b.io"}"#).unwrap();
    let debug = format!("{masked:?} {m:?}");
    assert!(
        !debug.contains("13812345678") && !debug.contains("a@b.io"),
        "{debug}"
    );
    let err = m.mask(br#"{"phone":"13812345678""#).unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("1381"), "{shown}");
}

#[test]
fn unmasked_body_is_returned_as_is() {
    let m = masker(json!({"fields": ["nope"], "detectors": ["email", "phone", "card", "cn_id"]}));
    let input =
        "{ \"a\" : [ 1.0 , -2e3 , true , false , null , \"x\\u00e9\\n\" ] , \"b\" : { } }\r\n";
    assert_eq!(run(&m, input), (input.to_string(), 0));
}

#[cfg(not(target_arch = "wasm32"))]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use proptest::strategy::Strategy;

    /// A generated document; numbers and strings keep their text.
    #[derive(Debug, Clone)]
    enum J {
        Null,
        Bool(bool),
        Num(&'static str),
        Str(String),
        Arr(Vec<J>),
        Obj(Vec<(&'static str, J)>),
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Seg {
        Key(&'static str),
        Index,
    }

    const KEYS: &[&str] = &[
        "phone",
        "id",
        "email",
        "name",
        "items",
        "card_number",
        "customer",
        "note",
        "a",
        "名",
        "Phone",
        "PHONE",
        "Customer",
        "EMAIL",
    ];
    /// Numbers the detectors recognise: replaced whole by a string.
    const PII_NUMBERS: &[&str] = &[
        "13812345678",
        "-13812345678",
        "4111111111111111",
        "1.3812345678e10",
        "41111111111111.11E2",
        "13812345678.000",
    ];
    const NUMBERS: &[&str] = &[
        "0",
        "-0",
        "1",
        "-17",
        "3.25",
        "1e9",
        "-2.5E-3",
        "12345678901234567890123456789",
        "13812345678",
        "-13812345678",
        "4111111111111111",
        "1.3812345678e10",
        "41111111111111.11E2",
        "13812345678.000",
        "13812345678.5",
        "1.3812345678e-10",
        "4111111111111112",
    ];
    /// Whole-string PII, each found as one match by the detectors.
    const PII: &[&str] = &[
        "john.doe@example.com",
        "+86 138 1234 5678",
        "+8613812345678",
        "13912345678",
        "4111 1111 1111 1111",
        "5555555555554444",
        "11010519491231002X",
    ];
    /// Free text: no digits, `@` or `+`, so no detector fires.
    const CHARS: &[char] = &[
        'a', 'Z', ' ', ',', '.', '-', '/', '"', '\\', '\n', '\t', '\u{1}', 'é', '中', '😀',
    ];

    /// Keys match case-insensitively (the default).
    fn selected(path: &[Seg]) -> bool {
        use Seg::*;
        let lower: Vec<Seg> = path
            .iter()
            .map(|s| match s {
                Key(k) => Key(KEYS
                    .iter()
                    .find(|c| c.to_lowercase() == k.to_lowercase() && **c == c.to_lowercase())
                    .copied()
                    .unwrap_or(k)),
                Index => Index,
            })
            .collect();
        matches!(lower.last(), Some(Key("phone")))
            || lower == [Key("customer"), Key("email")]
            || lower == [Key("items"), Index, Key("card_number")]
            || lower == [Index, Key("id")]
    }

    fn masker() -> Masker {
        super::masker(json!({
            "fields": ["phone", "customer.email", "items[*].card_number", "[*].id"],
            "detectors": ["email", "phone", "card", "cn_id"],
        }))
    }

    /// Renders `s` as a JSON string: `style` 0 escapes the minimum, 1 also
    /// `/` and non-ASCII (surrogate pairs beyond the BMP), 2 everything.
    fn quote(s: &str, style: u8, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            let must = matches!(c, '"' | '\\') || (c as u32) < 0x20;
            let want = match style {
                0 => must,
                1 => must || c == '/' || !c.is_ascii(),
                _ => true,
            };
            match c {
                _ if !want => out.push(c),
                '"' if style == 0 => out.push_str("\\\""),
                '\\' if style == 0 => out.push_str("\\\\"),
                '\n' if style == 0 => out.push_str("\\n"),
                '/' if style == 1 => out.push_str("\\/"),
                _ => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
            }
        }
        out.push('"');
    }

    /// Renders `j`; with `count`, renders what the masker should produce.
    fn render(
        j: &J,
        ws: &str,
        style: u8,
        path: &mut Vec<Seg>,
        count: Option<&mut u64>,
        out: &mut String,
    ) {
        if let Some(c) = count {
            let pii = matches!(j, J::Str(s) if PII.contains(&s.as_str()))
                || matches!(j, J::Num(n) if PII_NUMBERS.contains(n));
            if (!path.is_empty() && selected(path)) || pii {
                *c += 1;
                out.push_str("\"***\"");
                return;
            }
            return render_inner(j, ws, style, path, Some(c), out);
        }
        render_inner(j, ws, style, path, None, out)
    }

    fn render_inner(
        j: &J,
        ws: &str,
        style: u8,
        path: &mut Vec<Seg>,
        mut count: Option<&mut u64>,
        out: &mut String,
    ) {
        match j {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Num(n) => out.push_str(n),
            J::Str(s) => quote(s, style, out),
            J::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    out.push_str(if i > 0 { "," } else { "" });
                    out.push_str(ws);
                    path.push(Seg::Index);
                    render(item, ws, style, path, count.as_deref_mut(), out);
                    path.pop();
                    out.push_str(ws);
                }
                out.push(']');
            }
            J::Obj(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    out.push_str(if i > 0 { "," } else { "" });
                    out.push_str(ws);
                    quote(k, style, out);
                    out.push_str(ws);
                    out.push(':');
                    out.push_str(ws);
                    path.push(Seg::Key(k));
                    render(v, ws, style, path, count.as_deref_mut(), out);
                    path.pop();
                    out.push_str(ws);
                }
                out.push('}');
            }
        }
    }

    fn text() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(CHARS), 0..12).prop_map(String::from_iter)
    }

    fn doc() -> impl Strategy<Value = J> {
        let leaf = prop_oneof![
            Just(J::Null),
            any::<bool>().prop_map(J::Bool),
            prop::sample::select(NUMBERS).prop_map(J::Num),
            text().prop_map(J::Str),
            prop::sample::select(PII).prop_map(|s| J::Str(s.to_string())),
        ];
        leaf.prop_recursive(6, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(J::Arr),
                prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(J::Obj),
            ]
        })
    }

    fn ws() -> impl Strategy<Value = &'static str> {
        prop::sample::select(&["", " ", "\n  ", "\t", " \r\n "][..])
    }

    proptest! {
            #[test]
            fn masks_exactly_the_selected_positions(j in doc(), ws in ws(), style in 0u8..3) {
                let mut input = String::new();
                render(&j, ws, style, &mut Vec::new(), None, &mut input);
                let mut want = String::new();
                let mut want_count = 0;
                render(&j, ws, style, &mut Vec::new(), Some(&mut want_count), &mut want);

                let masked = masker().mask(input.as_bytes()).unwrap();
                let out = String::from_utf8(masked.body).unwrap();
                prop_assert!(serde_json::from_str::<serde_json::Value>(&out).is_ok(), "{}", out);
                // Same shape, same key order, same bytes except where masked.
                prop_assert_eq!(&out, &want);
                prop_assert_eq!(masked.count, want_count);
            }

            #[test]
            fn unmasked_documents_round_trip(j in doc(), ws in ws(), style in 0u8..3) {
                let mut input = String::new();
                render(&j, ws, style, &mut Vec::new(), None, &mut input);
                let m = super::masker(json!({"fields": ["never", "x.never", "[*][*].never"]}));
                let masked = m.mask(input.as_bytes()).unwrap();
                prop_assert_eq!(masked.count, 0);
                prop_assert_eq!(masked.body, input.into_bytes());
            }

            #[test]
            fn findings_are_spliced_into_escaped_text(
                before in text(), pii in prop::sample::select(PII), after in text(), style in 0u8..3,
            ) {
                let (before, after) = (format!("{before} "), format!(" {after}"));
                let mut input = String::new();
                quote(&format!("{before}{pii}{after}"), style, &mut input);
                // The same text rendered in three pieces, the middle one masked.
                let (mut head, mut tail) = (String::new(), String::new());
                quote(&before, style, &mut head);
                quote(&after, style, &mut tail);
                let want = format!("{}***{}", &head[..head.len() - 1], &tail[1..]);
                let masked = masker().mask(input.as_bytes()).unwrap();
                prop_assert_eq!(String::from_utf8(masked.body).unwrap(), want);
                prop_assert_eq!(masked.count, 1);
            }

            #[test]
            fn accepts_exactly_what_serde_json_accepts(
                j in doc(), ws in ws(), at in any::<prop::sample::Index>(),
                edit in 0u8..3, byte in prop::sample::select(&b"{}[],:\"\\ ex-.0tn\x01\xff"[..]),
            ) {
                let mut input = String::new();
                render(&j, ws, 0, &mut Vec::new(), None, &mut input);
                let mut bytes = input.into_bytes();
                let i = at.index(bytes.len() + 1);
                match edit {
                    0 if i < bytes.len() => { bytes.remove(i); }
                    1 if i < bytes.len() => bytes[i] = byte,
                    _ => bytes.insert(i, byte),
                }
                let theirs = serde_json::from_slice::<serde_json::Value>(&bytes);
                if let Err(e) = &theirs {
                    // Valid JSON that serde_json's f64 cannot hold.
                    prop_assume!(!e.to_string().contains("number out of range"));
                }
                let ours = masker().mask(&bytes);
                prop_assert_eq!(ours.is_ok(), theirs.is_ok(), "{:?}", String::from_utf8_lossy(&bytes));
                if let Err(e) = ours {
                    prop_assert_eq!(e, MaskError::BadJson);
                }
            }

            #[test]
            fn hash_is_keyed(
                value in "[0-9+ -]{0,20}", k1 in "[!-~]{16,40}", k2 in "[!-~]{16,40}",
                style in 0u8..3,
            ) {
                prop_assume!(k1 != k2);
                let hasher = |key: &str| super::masker(json!({
                    "fields": ["phone"], "strategy": "hash", "hash_key": {"value": key}
                }));
                let mut doc = String::from("{\"phone\":");
                quote(&value, style, &mut doc);
                doc.push('}');
                let one = hasher(&k1).mask(doc.as_bytes()).unwrap().body;
                let again = hasher(&k1).mask(doc.as_bytes()).unwrap().body;
                let other = hasher(&k2).mask(doc.as_bytes()).unwrap().body;
                // Deterministic under one key (joins still work), different
                // under another, and exactly the HMAC of the decoded value.
                prop_assert_eq!(&one, &again);
                prop_assert_ne!(&one, &other);
                let want = format!("{{\"phone\":\"{}\"}}", hmac_hex(&k1, &value));
                prop_assert_eq!(String::from_utf8(one).unwrap(), want);
            }

            #[test]
            fn numbers_are_masked_into_valid_json(
                n in prop::sample::select(NUMBERS), strategy in 0u8..3, ws in ws(),
            ) {
                let spec = match strategy {
                    0 => json!({"detectors": ["phone", "card"]}),
                    1 => json!({"detectors": ["phone", "card"], "strategy": "partial"}),
                    _ => json!({"detectors": ["phone", "card"], "strategy": "hash",
                                "hash_key": {"value": HASH_KEY}}),
                };
                let input = format!("{{\"n\":{ws}{n}{ws},\"m\":[{n},{ws}{n}]}}");
                let masked = super::masker(spec).mask(input.as_bytes()).unwrap();
                let out = String::from_utf8(masked.body).unwrap();
                let v: serde_json::Value = serde_json::from_str(&out)
                    .unwrap_or_else(|e| panic!("{e}: {out}"));
                let pii = PII_NUMBERS.contains(&n);
                prop_assert_eq!(masked.count, if pii { 3 } else { 0 });
                prop_assert_eq!(v["n"].is_string(), pii, "{}", out);
                if pii {
                    prop_assert!(!out.contains(n), "{}", out);
                }
            }
    }
}

#[test]
fn field_keys_match_case_insensitively_unless_opted_out() {
    let body = r#"{"Phone":"1","PHONE":"2","phone":"3","Customer":{"Email":"a"},"\u0050hone":"4"}"#;
    let m = masker(json!({"fields": ["phone", "customer.email"]}));
    assert_eq!(
        run(&m, body),
        (
            r#"{"Phone":"***","PHONE":"***","phone":"***","Customer":{"Email":"***"},"\u0050hone":"***"}"#
                .to_string(),
            5
        )
    );
    let exact = masker(json!({"fields": ["phone", "customer.email"], "case_sensitive": true}));
    assert_eq!(
        run(&exact, body),
        (
            r#"{"Phone":"1","PHONE":"2","phone":"***","Customer":{"Email":"a"},"\u0050hone":"4"}"#
                .to_string(),
            1
        )
    );
}

#[test]
fn hash_key_never_shows_in_debug() {
    let m = masker(json!({"fields": ["x"], "strategy": "hash", "hash_key": {"value": HASH_KEY}}));
    let shown = format!("{m:?}");
    assert!(!shown.contains(HASH_KEY), "{shown}");
}

#[test]
fn json_is_recognised_by_its_content_type_or_its_first_byte() {
    assert!(Masker::applies(Some("application/json"), b"x"));
    assert!(Masker::applies(Some("text/plain"), b"  {\"a\":1}"));
    assert!(Masker::applies(None, b"\n[1]"));
    assert!(!Masker::applies(
        Some("text/plain"),
        b"phone +8613812345678"
    ));
    assert!(!Masker::applies(None, b""));
    // Behind a UTF-8 byte-order mark (which .NET's parser skips).
    assert!(Masker::applies(
        Some("text/plain"),
        b"\xEF\xBB\xBF{\"phone\":1}"
    ));
}

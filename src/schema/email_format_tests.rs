use super::{EmailProblem, check_email, is_email};

/// Kratos v26.2.0's verdicts, each with the rule that decides it.
const KRATOS_VERDICTS: &str = include_str!("../../tests/fixtures/email/kratos-v26.2.0.tsv");

/// `(address, Kratos accepts it, rule)` from the fixture, then the length limits, which are
/// easier built than written out.
fn cases() -> Vec<(String, bool, String)> {
    let mut cases: Vec<(String, bool, String)> = KRATOS_VERDICTS
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let [verdict, address, rule] = fields[..] else {
                panic!("expected verdict, address and rule in {line:?}");
            };
            let accepted = match verdict {
                "accept" => true,
                "refuse" => false,
                other => panic!("unknown verdict {other:?} in {line:?}"),
            };
            let address: String = serde_json::from_str(address)
                .unwrap_or_else(|e| panic!("{address} is not a JSON string: {e}"));
            (address, accepted, rule.to_owned())
        })
        .collect();

    let a = |n| "a".repeat(n);
    let b = |n| "b".repeat(n);
    for (address, accepted, rule) in [
        (format!("{}@x.example", a(64)), true, "a 64-byte local part"),
        (
            format!("{}@x.example", a(65)),
            false,
            "a local part over 64 bytes",
        ),
        (
            format!("{}@x.example", "é".repeat(32)),
            true,
            "64 bytes in 32 characters",
        ),
        (
            format!("{}@x.example", "é".repeat(33)),
            false,
            "bytes count, not characters",
        ),
        (format!(" {}@x.example", a(64)), false, "padding counts"),
        (format!("ada@{}.example", b(63)), true, "a 63-byte label"),
        (
            format!("ada@{}.example", b(64)),
            false,
            "a label over 63 bytes",
        ),
        (
            format!("{}@{}.{}.{}", a(64), b(63), b(63), b(61)),
            true,
            "254 bytes",
        ),
        (
            format!("{}@{}.{}.{}", a(64), b(63), b(63), b(62)),
            false,
            "over 254 bytes",
        ),
    ] {
        cases.push((address, accepted, format!("ory/jsonschema: {rule}")));
    }
    cases
}

#[test]
fn email_format_gives_the_kratos_verdict_on_every_case() {
    let cases = cases();
    assert!(cases.len() > 50, "the fixture was not read");

    let wrong: Vec<String> = cases
        .into_iter()
        .filter(|(address, accepted, _)| is_email(address) != *accepted)
        .map(|(address, accepted, rule)| {
            let kratos = if accepted { "accepts" } else { "refuses" };
            format!("{address:?}: Kratos {kratos} it ({rule})")
        })
        .collect();

    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn a_refused_address_is_told_the_rule_it_breaks() {
    for (address, problem) in [
        ("ada@bücher.example", EmailProblem::NonAsciiDomain),
        ("Ada <ada@acme.example>", EmailProblem::DomainCharacter),
        ("ada@acme.example.", EmailProblem::EmptyDomainLabel),
        ("ada @acme.example", EmailProblem::LocalPartCharacter),
        ("\"\"@acme.example", EmailProblem::QuotedLocalPart),
    ] {
        assert_eq!(check_email(address), Err(problem), "{address:?}");
    }
}

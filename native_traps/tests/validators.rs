//! Post-match validators: valid and invalid cases for each, using the test
//! numbers that issuers and standards bodies publish.

use _native_traps::{RegexTrap, RuleSpec, Severity, Validator};

fn ok(v: Validator, s: &str) -> bool {
    v.accepts(s.as_bytes())
}

/// Append the Luhn check digit to `prefix` (digits only).
fn with_check_digit(prefix: &str) -> String {
    for d in 0..10 {
        let candidate = format!("{prefix}{d}");
        if Validator::Luhn.accepts(candidate.as_bytes()) {
            return candidate;
        }
    }
    unreachable!("one of ten check digits always fits")
}

/// A Luhn-valid number of `len` digits starting with `prefix`.
fn card(prefix: &str, len: usize) -> String {
    let body = format!("{prefix}{}", "0".repeat(len - 1 - prefix.len()));
    with_check_digit(&body)
}

#[test]
fn names_round_trip() {
    for v in Validator::ALL {
        assert_eq!(v.as_str().parse::<Validator>(), Ok(v));
        assert_eq!(v.to_string(), v.as_str());
    }
    for name in ["iban", "us_ssn", "iin_card", "e164", "ipv4", "ipv6", "luhn"] {
        assert!(name.parse::<Validator>().is_ok(), "{name}");
    }
    assert!("IBAN".parse::<Validator>().is_err());
}

#[test]
fn iban_valid() {
    for s in [
        "GB82WEST12345698765432",
        "DE89370400440532013000",
        "GB82 WEST 1234 5698 7654 32",
        "DE89 3704 0044 0532 0130 00",
        "gb82west12345698765432",
        "FR1420041010050500013M02606",
        "NL91ABNA0417164300",
        "CH9300762011623852957",
        "BE68539007547034",
        "NO9386011117947",
        "AT611904300234573201",
    ] {
        assert!(ok(Validator::Iban, s), "{s}");
    }
}

#[test]
fn iban_invalid() {
    for s in [
        "GB82WEST12345698765433",  // check digits do not fit
        "GB28WEST12345698765432",  // check digits swapped
        "DE8937040044053201300",   // one character short for DE
        "DE893704004405320130000", // one character long for DE
        "US64SVBKUS6S3300958879",  // no IBAN for US
        "XX82WEST12345698765432",  // unknown country
        "GB82-WEST-1234-5698-7654-32",
        "G182WEST12345698765432",
        "GBX2WEST12345698765432",
        "GB82",
        "",
    ] {
        assert!(!ok(Validator::Iban, s), "{s}");
    }
}

#[test]
fn us_ssn() {
    for s in [
        "123-45-6789",
        "123 45 6789",
        "123456789",
        "001-01-0001",
        "899-99-9999",
    ] {
        assert!(ok(Validator::UsSsn, s), "{s}");
    }
    for s in [
        "000-12-3456", // area 000
        "666-12-3456", // area 666
        "900-12-3456", // area 9xx
        "999-99-9999",
        "123-00-4567", // group 00
        "123-45-0000", // serial 0000
        "078-05-1120", // burned (wallet insert)
        "219-09-9999", // burned (advert)
        "12345678",
        "1234567890",
        "123-45-678x",
        "",
    ] {
        assert!(!ok(Validator::UsSsn, s), "{s}");
    }
}

#[test]
fn iin_card_published_test_numbers() {
    for s in [
        "4111 1111 1111 1111", // Visa
        "4012888888881881",    // Visa
        "4222222222222",       // Visa, 13 digits
        "5555555555554444",    // Mastercard
        "5105-1051-0510-5100", // Mastercard
        "2223003122003222",    // Mastercard 2-series
        "378282246310005",     // Amex
        "371449635398431",     // Amex
        "6011111111111117",    // Discover
        "6011000990139424",    // Discover
        "3530111333300000",    // JCB
        "3566002020360505",    // JCB
        "30569309025904",      // Diners Club, 14 digits
        "38520000023237",      // Diners Club, 14 digits
        "6200000000000005",    // UnionPay
    ] {
        assert!(ok(Validator::IinCard, s), "{s}");
    }
}

#[test]
fn iin_card_lengths_and_ranges() {
    // Luhn-valid, but the issuer does not use that length or range.
    for (prefix, len) in [
        ("4", 15),
        ("4", 14),
        ("51", 15),
        ("55", 19),
        ("2221", 15),
        ("34", 16),
        ("37", 14),
        ("6011", 15),
        ("3528", 15),
        ("62", 15),
        ("36", 13),
        ("1", 16),
        ("2220", 16),
        ("2721", 16),
        ("56", 16),
        ("643", 16),
        ("3527", 16),
        ("3590", 16),
        ("306", 14),
        ("9", 16),
    ] {
        let number = card(prefix, len);
        assert!(Validator::Luhn.accepts(number.as_bytes()), "{number}");
        assert!(!ok(Validator::IinCard, &number), "{prefix}/{len}: {number}");
    }
    // The same issuers at their own lengths.
    for (prefix, len) in [
        ("4", 13),
        ("4", 16),
        ("4", 19),
        ("51", 16),
        ("55", 16),
        ("2221", 16),
        ("2720", 16),
        ("34", 15),
        ("37", 15),
        ("6011", 16),
        ("644", 16),
        ("649", 19),
        ("65", 16),
        ("3528", 16),
        ("3589", 19),
        ("62", 16),
        ("62", 19),
        ("36", 14),
        ("38", 16),
        ("300", 14),
        ("305", 14),
    ] {
        let number = card(prefix, len);
        assert!(ok(Validator::IinCard, &number), "{prefix}/{len}: {number}");
    }
    assert!(!ok(Validator::IinCard, "4111 1111 1111 1112")); // Luhn fails
    assert!(!ok(Validator::IinCard, "4111x1111 1111 1111"));
    assert!(!ok(Validator::IinCard, "41111111111111111111")); // 20 digits
    assert!(!ok(Validator::IinCard, ""));
}

#[test]
fn e164() {
    for s in [
        "+14155552671",
        "+44 20 7946 0958",
        "+44 (0)20 7946 0958",
        "+49 (30) 1234567",
        "+33.1.23.45.67.89",
        "+1-415-555-2671",
        "+12345678",        // 8 digits
        "+123456789012345", // 15 digits
    ] {
        assert!(ok(Validator::E164, s), "{s}");
    }
    for s in [
        "14155552671",       // no plus
        "+0123456789",       // leading 0
        "+1234567",          // 7 digits
        "+1234567890123456", // 16 digits
        "+44 20 7946 0958x",
        "+44/20/7946/0958",
        "++4420794609",
        "+",
        "",
    ] {
        assert!(!ok(Validator::E164, s), "{s}");
    }
}

#[test]
fn ipv4() {
    for s in [
        "192.168.0.1",
        "8.8.8.8",
        "255.255.255.255",
        "0.0.0.0",
        "10.0.10.100",
    ] {
        assert!(ok(Validator::Ipv4, s), "{s}");
    }
    for s in [
        "256.1.1.1",
        "1.2.3.256",
        "01.2.3.4",
        "1.2.3.04",
        "1.2.3",
        "1.2.3.4.5",
        "1..2.3",
        "1.2.3.",
        "a.b.c.d",
        "1234.1.1.1",
        "",
    ] {
        assert!(!ok(Validator::Ipv4, s), "{s}");
    }
}

#[test]
fn ipv6() {
    for s in [
        "::1",
        "2001:db8::1",
        "2001:0db8:0000:0000:0000:ff00:0042:8329",
        "fe80::1ff:fe23:4567:890a",
        "::ffff:192.0.2.1",
        "::",
    ] {
        assert!(ok(Validator::Ipv6, s), "{s}");
    }
    for s in [
        "2001:db8:::1",
        "12345::",
        "g::1",
        "1:2:3:4:5:6:7:8:9",
        "1:2:3:4:5:6:7",
        "192.168.0.1",
        "",
    ] {
        assert!(!ok(Validator::Ipv6, s), "{s}");
    }
    assert!(!Validator::Ipv6.accepts(b"::\xff"));
}

#[test]
fn validators_entropy_and_stopwords_filter_findings() {
    let trap = RegexTrap::compile(vec![
        RuleSpec::new(
            "iban",
            "pii",
            Severity::Error,
            r"\b(?P<secret>[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?)\b",
        )
        .with_validator(Validator::Iban),
        RuleSpec::new(
            "password",
            "secret",
            Severity::Error,
            r#"password\s*=\s*(?P<secret>[^\s"']{6,64})"#,
        )
        .with_keywords(["password"])
        .with_min_entropy(3.0)
        .with_stopwords(["example", "${"]),
    ])
    .unwrap();
    let body = b"iban GB82 WEST 1234 5698 7654 32 vs GB82 WEST 1234 5698 7654 33";
    let found = trap.scan(body);
    assert_eq!(found.len(), 1);
    assert_eq!(
        &body[found[0].start..found[0].end],
        b"GB82 WEST 1234 5698 7654 32"
    );

    let hits = |s: &str| trap.scan(s.as_bytes()).len();
    assert_eq!(hits("password=changeme"), 0); // entropy 2.75
    assert_eq!(hits("password=aaaaaaaaaaaa"), 0);
    assert_eq!(hits("password=${DB_PASSWORD}"), 0);
    assert_eq!(hits("password=MyEXAMPLEpass42"), 0); // stopword, any case
    assert_eq!(hits("password=Xk9#q2Lm!vR7"), 1);
}

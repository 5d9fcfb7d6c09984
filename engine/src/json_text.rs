//! Writing JSON text for decisions and audit records, byte for byte what `serde_json` writes.
//!
//! A decision and its audit line are written on every request, and in Wasm `serde_json`'s
//! writer is a tenth of a cached decision: its escape loop looks at one byte at a time and copies
//! every clean run with its own `memcpy`, which a Wasm runtime turns into a call out of the
//! sandbox. Decision strings are short and nearly always clean, so [`push_string`] looks for a
//! byte to escape eight at a time and copies a clean string in one go. The tests in
//! `decision.rs` hold the output to `serde_json`'s.

/// `s` as a JSON string (quotes included), escaped exactly as `serde_json` escapes it: `"` and
/// `\` with a backslash, the control characters with their short form or `\u00xx` (lower-case
/// hex); everything else, non-ASCII included, as it is.
pub(crate) fn push_string(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut rest = s;
    while let Some(at) = first_to_escape(rest.as_bytes()) {
        // `at` is the index of an ASCII byte, hence a character boundary.
        let Some((clean, tail)) = rest.split_at_checked(at) else {
            break;
        };
        out.push_str(clean);
        let mut chars = tail.chars();
        if let Some(c) = chars.next() {
            push_escape(out, c);
        }
        rest = chars.as_str();
    }
    out.push_str(rest);
    out.push('"');
}

/// `Some(s)` as a string, `None` as `null`.
pub(crate) fn push_opt_string(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => push_string(out, s),
        None => out.push_str("null"),
    }
}

/// A JSON array of strings.
pub(crate) fn push_strings<'a>(out: &mut String, items: impl IntoIterator<Item = &'a str>) {
    out.push('[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_string(out, item);
    }
    out.push(']');
}

/// An integer.
pub(crate) fn push_int(out: &mut String, n: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// The escape of one character that needs it (`"`, `\` or a control character).
fn push_escape(out: &mut String, c: char) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        _ => {
            let b = u32::from(c);
            out.push_str("\\u00");
            for nibble in [(b >> 4) & 0xf, b & 0xf] {
                let digit = HEX.get(nibble as usize).copied().unwrap_or(b'0');
                out.push(char::from(digit));
            }
        }
    }
}

/// Whether a byte must be escaped in a JSON string.
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// The index of the first byte that must be escaped, looking at eight bytes at a time.
fn first_to_escape(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Whether any byte of `x` is below `n` (n ≤ 0x80); exact for the word as a whole.
    let any_below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS != 0;
    let any_equal = |x: u64, b: u8| any_below(x ^ (ONES * u64::from(b)), 1);
    let (words, tail) = bytes.as_chunks::<8>();
    for (w, word) in words.iter().enumerate() {
        let x = u64::from_ne_bytes(*word);
        if any_below(x, 0x20) || any_equal(x, b'"') || any_equal(x, b'\\') {
            // The word has one: find it.
            return word
                .iter()
                .position(|&b| needs_escape(b))
                .map(|i| w * 8 + i);
        }
    }
    tail.iter()
        .position(|&b| needs_escape(b))
        .map(|i| words.len() * 8 + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde(s: &str) -> String {
        serde_json::to_string(s).unwrap()
    }

    fn ours(s: &str) -> String {
        let mut out = String::new();
        push_string(&mut out, s);
        out
    }

    #[test]
    fn every_ascii_byte_at_every_word_position_escapes_as_serde_json_does() {
        for b in 0u8..0x80 {
            let c = char::from(b);
            for len in 0..20 {
                for at in 0..len {
                    let s: String = (0..len).map(|i| if i == at { c } else { 'a' }).collect();
                    assert_eq!(ours(&s), serde(&s), "byte {b:#04x} at {at} of {len}");
                    assert_eq!(first_to_escape(s.as_bytes()), needs_escape(b).then_some(at));
                }
            }
        }
    }

    #[test]
    fn non_ascii_and_mixed_strings_escape_as_serde_json_does() {
        let samples = [
            "",
            "TechFin::User::\"acme/alice\"",
            "Report::\"a\\\"b\\\\c\nd\"",
            "ünïcödé — 日本語 🦀 \u{2028}\u{2029}\u{7f}\u{80}\u{ffff}",
            "\u{0}\u{1f}\"\\\"\\",
            "quote at the end of a word\"",
            "a longer clean string without anything to escape in it at all",
        ];
        for s in samples {
            assert_eq!(ours(s), serde(s), "{s:?}");
        }
        // Pseudo-random strings over a small alphabet heavy in specials.
        let alphabet = [
            'a', '"', '\\', '\n', '\u{1}', 'é', '🦀', '\u{7f}', ' ', '\t',
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..5_000 {
            let mut s = String::new();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 40) as usize;
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                s.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            assert_eq!(ours(&s), serde(&s), "{s:?}");
        }
    }

    #[test]
    fn helpers_write_json() {
        let mut out = String::new();
        push_opt_string(&mut out, None);
        out.push(',');
        push_opt_string(&mut out, Some("x"));
        out.push(',');
        push_strings(&mut out, ["a", "b\"c"]);
        out.push(',');
        push_strings(&mut out, []);
        out.push(',');
        push_int(&mut out, -1_760_000_000_i64);
        push_int(&mut out, 403_u16);
        assert_eq!(out, r#"null,"x",["a","b\"c"],[],-1760000000403"#);
    }
}

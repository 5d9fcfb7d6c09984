//! Where a value is in a JSON document: the byte offset of the value at a path such as
//! `routes[3].resource.attrs`, so that a problem found after parsing (an unknown action, an
//! unsupported algorithm) is reported at its line and column, not just its file.
//!
//! A small scanner over the text as it was written; `serde_json` keeps no positions. It reads
//! only well-formed JSON (the document has already parsed) and gives up, answering `None`, on
//! anything else.

/// One step of a path into a JSON document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step<'a> {
    /// A member of an object.
    Key(&'a str),
    /// An element of an array.
    Index(usize),
}

/// The byte offset of the value at `path` in `text`; with a path that stops early (a key that
/// is not there), the offset of the deepest value found on the way.
pub(crate) fn locate(text: &str, path: &[Step<'_>]) -> Option<usize> {
    let mut scanner = Scanner {
        bytes: text.as_bytes(),
        at: 0,
    };
    scanner.skip_ws();
    let start = scanner.at;
    Some(scanner.find(path, 0).unwrap_or(start))
}

struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

/// Nesting beyond this is not followed (the documents are configuration files).
const MAX_DEPTH: usize = 64;

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.skip_ws();
        (self.peek() == Some(byte)).then(|| self.at += 1)
    }

    /// At the start of a value: follow `path` into it. `Some(offset)` of the deepest value
    /// reached along the path.
    fn find(&mut self, path: &[Step<'_>], depth: usize) -> Option<usize> {
        self.skip_ws();
        let here = self.at;
        let Some((step, rest)) = path.split_first() else {
            return Some(here);
        };
        if depth > MAX_DEPTH {
            return Some(here);
        }
        match (step, self.peek()?) {
            (Step::Key(wanted), b'{') => {
                self.at += 1;
                loop {
                    self.skip_ws();
                    if self.peek()? == b'}' {
                        return Some(here);
                    }
                    let key = self.string()?;
                    self.expect(b':')?;
                    if key == *wanted {
                        return self.find(rest, depth + 1).or(Some(here));
                    }
                    self.skip_value(depth + 1)?;
                    self.skip_ws();
                    match self.peek()? {
                        b',' => self.at += 1,
                        _ => return Some(here),
                    }
                }
            }
            (Step::Index(wanted), b'[') => {
                self.at += 1;
                let mut index = 0;
                loop {
                    self.skip_ws();
                    if self.peek()? == b']' {
                        return Some(here);
                    }
                    if index == *wanted {
                        return self.find(rest, depth + 1).or(Some(here));
                    }
                    self.skip_value(depth + 1)?;
                    index += 1;
                    self.skip_ws();
                    match self.peek()? {
                        b',' => self.at += 1,
                        _ => return Some(here),
                    }
                }
            }
            _ => Some(here),
        }
    }

    /// A string at the cursor, unescaped (escapes other than the simple ones are kept as
    /// written: keys that need them do not occur in configuration files).
    fn string(&mut self) -> Option<String> {
        self.skip_ws();
        if self.peek()? != b'"' {
            return None;
        }
        self.at += 1;
        let mut out = Vec::new();
        loop {
            let b = self.peek()?;
            self.at += 1;
            match b {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let escaped = self.peek()?;
                    self.at += 1;
                    out.push(match escaped {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        other => other,
                    });
                }
                other => out.push(other),
            }
        }
    }

    fn skip_value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.skip_ws();
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            open @ (b'{' | b'[') => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.at += 1;
                loop {
                    self.skip_ws();
                    if self.peek()? == close {
                        self.at += 1;
                        return Some(());
                    }
                    if open == b'{' {
                        self.string()?;
                        self.expect(b':')?;
                    }
                    self.skip_value(depth + 1)?;
                    self.skip_ws();
                    match self.peek()? {
                        b',' => self.at += 1,
                        b if b == close => {}
                        _ => return None,
                    }
                }
            }
            _ => {
                while self
                    .peek()
                    .is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace())
                {
                    self.at += 1;
                }
                Some(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_values_by_path() {
        let text = r#"{
  "a": 1,
  "routes": [
    {"path": "/x", "action": "veiw"},
    {"path": "/y", "resource": {"type": "R", "attrs": {"d": "{id}"}}}
  ],
  "s": "with \" quote"
}"#;
        let at = |path: &[Step]| {
            let offset = locate(text, path).unwrap();
            text[offset..].chars().take(6).collect::<String>()
        };
        assert_eq!(at(&[Step::Key("a")]), "1,\n  \"");
        assert_eq!(
            at(&[Step::Key("routes"), Step::Index(0), Step::Key("action")]),
            "\"veiw\""
        );
        assert_eq!(
            at(&[
                Step::Key("routes"),
                Step::Index(1),
                Step::Key("resource"),
                Step::Key("attrs"),
                Step::Key("d")
            ]),
            "\"{id}\""
        );
        // A missing step stops at the deepest value found.
        assert_eq!(
            at(&[Step::Key("routes"), Step::Index(1), Step::Key("nope")]),
            "{\"path"
        );
        assert_eq!(at(&[Step::Key("s")]), "\"with ");
        assert_eq!(at(&[Step::Key("routes"), Step::Index(7)]), "[\n    ");
    }

    #[test]
    fn garbage_never_panics() {
        for text in [
            "",
            "{",
            "[",
            "{\"a\"",
            "{\"a\":[1,",
            "\"\\",
            "{\"a\":{\"b\":",
        ] {
            let _ = locate(text, &[Step::Key("a"), Step::Index(3), Step::Key("b")]);
        }
    }
}

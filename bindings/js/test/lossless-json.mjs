// JSON.parse that keeps integers outside JavaScript's safe range exact, as BigInt (Cedar `Long`
// values are 64-bit; the corpus uses the extremes). Node 20 has no JSON.parse source access.

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
const SPACE = /[ \t\n\r]*/y;

export function parseLossless(text) {
  let at = 0;
  const skip = () => {
    SPACE.lastIndex = at;
    SPACE.exec(text);
    at = SPACE.lastIndex;
  };
  const fail = (what) => {
    throw new SyntaxError(`${what} at offset ${at}`);
  };
  const literal = (word, value) => {
    if (text.startsWith(word, at)) {
      at += word.length;
      return value;
    }
    return fail("unexpected token");
  };
  const value = () => {
    skip();
    const c = text[at];
    if (c === "{") {
      at += 1;
      const out = {};
      skip();
      if (text[at] === "}") {
        at += 1;
        return out;
      }
      for (;;) {
        skip();
        if (text[at] !== '"') fail("expected a key");
        const key = string();
        skip();
        if (text[at] !== ":") fail("expected `:`");
        at += 1;
        Object.defineProperty(out, key, { value: value(), enumerable: true, writable: true, configurable: true });
        skip();
        if (text[at] === ",") at += 1;
        else if (text[at] === "}") {
          at += 1;
          return out;
        } else fail("expected `,` or `}`");
      }
    }
    if (c === "[") {
      at += 1;
      const out = [];
      skip();
      if (text[at] === "]") {
        at += 1;
        return out;
      }
      for (;;) {
        out.push(value());
        skip();
        if (text[at] === ",") at += 1;
        else if (text[at] === "]") {
          at += 1;
          return out;
        } else fail("expected `,` or `]`");
      }
    }
    if (c === '"') return string();
    if (c === "t") return literal("true", true);
    if (c === "f") return literal("false", false);
    if (c === "n") return literal("null", null);
    NUMBER.lastIndex = at;
    const m = NUMBER.exec(text);
    if (!m) fail("unexpected token");
    at = NUMBER.lastIndex;
    const n = Number(m[0]);
    if (/^-?\d+$/.test(m[0]) && !Number.isSafeInteger(n)) return BigInt(m[0]);
    return n;
  };
  const string = () => {
    STRING.lastIndex = at;
    const m = STRING.exec(text);
    if (!m) fail("bad string");
    at = STRING.lastIndex;
    return JSON.parse(m[0]);
  };
  const out = value();
  skip();
  if (at !== text.length) fail("trailing characters");
  return out;
}

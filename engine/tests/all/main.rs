//! Integration tests of the engine (one binary, modules by topic).

mod cedar_corpus;
mod wycheproof;

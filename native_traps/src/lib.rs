//! Native traps for the Godel Guardrail `ext_proc` server.
//!
//! * [`RegexTrap`]: regex rules over raw bytes, prefiltered by keywords (an
//!   AVX-512 Teddy-style filter where the CPU has it, else a bucketed
//!   shift-or filter or Aho-Corasick), with optional post-match validators
//!   such as Luhn.
//! * [`EntropyTrap`]: Shannon-entropy detector for random-looking tokens
//!   (API keys, hex digests, base64 secrets).
//!
//! Both scan `&[u8]` in time linear in the input, report byte offsets, and
//! are immutable after construction (`Send + Sync`). The Python binding
//! (`ext_proc._native_traps`, feature `python`) lives in the `python` module
//! and is the only code that touches `PyO3`.

mod byte_mask;
mod digit_windows;
pub mod entropy;
pub mod error;
pub mod filter_tuning;
pub mod keyword_coverage;
pub mod keyword_filter;
pub mod keyword_teddy;
pub mod leet_gate;
pub mod normalize;
pub mod regex_trap;
mod required_byte;
pub mod rule;
mod text_model;
pub mod whitespace;

#[cfg(test)]
mod test_rng;

#[cfg(feature = "python")]
mod py_normalize;
#[cfg(feature = "python")]
mod python;

pub use entropy::{Charset, EntropyFinding, EntropyThresholds, EntropyTrap};
pub use error::TrapError;
pub use regex_trap::{CompileOptions, Finding, RegexTrap};
pub use rule::{RuleSpec, Severity, Validator};

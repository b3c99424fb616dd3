//! JSON records to Arrow record batches, by a dataset's schema.
//!
//! Flat records are taken from the page's text where the page's walk meets their array
//! ([`Normalizer::push_array`]); other records (nested ones flattened, fan-out details,
//! pushes) arrive as raw JSON ([`serde_json::value::RawValue`], [`Normalizer::push`]).
//! Either way the [`Normalizer`] walks each record once, driven by the schema and checking
//! the JSON as it goes: every key is looked up in the schema's field index, a declared
//! field's value is read as its column's type and staged, and an undeclared field's raw
//! JSON is kept for the `_extra` column. A row
//! reaches the Arrow builders only once the whole record is valid, so a rejected record
//! leaves nothing behind; its [`RejectReason`] names the field and the value seen, and
//! [`RejectedRecord`] is how it is kept in `_rejects/`.
//!
//! Choices where the JSON is ambiguous:
//! - a key that appears twice in one record is a reject (no value is silently dropped);
//! - an integer column accepts a number with a fraction or exponent (`5.0`, `1e3`) only when
//!   its value is exactly an integer, decided on the decimal text, never through `f64`;
//! - an empty string is not a null: it is a reject in a numeric, boolean or timestamp column.

mod columns;
mod json_text;
mod members;
mod normalizer;
mod number;
mod reason;
mod record;
pub mod rejects;
mod value;

#[cfg(test)]
mod proptests;

pub use normalizer::Normalizer;
pub use reason::RejectReason;
pub use rejects::{RejectedRecord, RejectedSet};

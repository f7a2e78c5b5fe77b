//! Sekisho recorder: the recording format (writer, reader, verification), signing, storage,
//! and the audit catalogue.

pub mod catalogue;

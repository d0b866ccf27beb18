//! The fieldsync server: branch edge server and head office (issue #3 onwards).

//! Embedded driver (in progress).

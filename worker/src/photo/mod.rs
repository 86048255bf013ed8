//! Owned by the photo-task work; placeholder until it lands.

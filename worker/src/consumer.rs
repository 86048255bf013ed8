//! Owned by the fleet work; placeholder until it lands.

//! Bogon addresses (being written).

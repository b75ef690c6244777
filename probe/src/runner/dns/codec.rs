//! DNS wire codec (being written).

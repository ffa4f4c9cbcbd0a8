//! Persistence behind one trait (being written).

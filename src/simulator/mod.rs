//! An in-process Kandji tenant for the demo and the tests (being written).

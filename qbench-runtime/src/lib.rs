//! qbench runtime

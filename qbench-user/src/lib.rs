//! qbench-trace library

//! What qbench-trace writes: the human and JSON reports ([`output`]), the pictures of update
//! windows, Chrome trace and SVG timeline ([`pictures`]), and the safe replacement of output
//! files ([`file_output`]).

pub mod file_output;
pub mod output;
pub mod pictures;

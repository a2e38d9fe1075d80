//! Why a thread did not quiesce: the pure rules ([`diagnose`]) over the facts gathered from
//! /proc and the target's memory ([`evidence`]), the target's user stacks ([`stack`]) and
//! memory reads ([`memory`]), a sleep's request read only while the thread is in that sleep
//! ([`sleep`]), and which threads wait on I/O that is ready ([`readiness`]).

pub mod diagnose;
pub mod evidence;
pub mod memory;
pub mod readiness;
pub mod sleep;
pub mod stack;

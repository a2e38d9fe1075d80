//! The runtime's own waits: `qbench_usleep`, `qbench_pthread_cond_wait` and the runtime's
//! parking. A thread in one is in a wait the runtime ends when it interrupts the thread, so it
//! is never the program's `mutex_wait`, `cond_wait_unwrapped` or `sleeping`.

use super::{Facts, FrameFact};

/// A symbol of the runtime: its C API (`qbench_*`), its Rust namespace (`qbench::`, demangled
/// or mangled in either scheme), as functions or data (`qbench::state::PENDING`).
pub fn is_runtime_symbol(name: &str) -> bool {
    let name = name.trim_start_matches('<');
    name.starts_with("qbench_")
        || name.starts_with("qbench::")
        || name.starts_with("_ZN6qbench")
        || (name.starts_with("_R") && name.contains("6qbench"))
}

fn is_runtime_frame(frame: &FrameFact) -> bool {
    frame.function.as_deref().is_some_and(is_runtime_symbol)
        || frame
            .object
            .as_deref()
            .is_some_and(|o| o.starts_with("libqbench"))
}

/// The runtime's wait the thread is in, by name (the runtime's outermost frame above the C
/// library, `qbench_usleep`, or the runtime's futex word), or None when the wait is the
/// program's. Only the frames nearest the call count: a thread the runtime created has the
/// runtime's trampoline at the bottom of every stack.
pub fn runtime_wait(f: &Facts) -> Option<String> {
    let mut above_system = f.frames.iter().skip_while(|frame| frame.is_system());
    let innermost = above_system.next();
    if let Some(first) = innermost.filter(|frame| is_runtime_frame(frame)) {
        let outermost = std::iter::once(first)
            .chain(above_system.take_while(|frame| is_runtime_frame(frame)))
            .filter_map(|frame| frame.function.as_deref())
            .last();
        return Some(outermost.unwrap_or("the runtime's code").to_string());
    }
    // Without a stack, the futex word says whose wait it is.
    f.futex
        .as_ref()
        .and_then(|x| x.symbol.as_deref())
        .filter(|s| is_runtime_symbol(s))
        .map(str::to_string)
}
